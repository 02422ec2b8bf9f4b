"""CPU time of the service's processes and of PostgreSQL, read from ``/proc``: what a
command costs, as opposed to how fast a run happened to go on a busy machine."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: fields restart after its ")".
    return text.rsplit(")", 1)[1].split()


def _part(pid: int) -> str:
    """The part a process of ``boxoffice`` runs (``web``, ``worker``...), by its command."""
    try:
        argv = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in argv if a]
    if "interfaces.cli.main" in words:
        after = words.index("interfaces.cli.main") + 1
        return words[after] if after < len(words) else "?"
    return Path(words[0]).name if words else "?"


def cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of each part started by this process (its whole tree of
    processes, by the part its top process runs) and of every ``postgres`` process."""
    children: defaultdict[int, list[int]] = defaultdict(list)
    seconds: dict[int, float] = {}
    postgres = 0.0
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        fields = _stat(pid)
        if fields is None:
            continue
        # After the name: state, ppid, ... utime and stime are fields 14 and 15 of stat.
        used = (int(fields[11]) + int(fields[12])) / TICKS
        children[int(fields[1])].append(pid)
        seconds[pid] = used
        try:
            if (PROC / entry.name / "comm").read_text().strip() == "postgres":
                postgres += used
        except OSError:
            continue
    parts: defaultdict[str, float] = defaultdict(float)

    def add(pid: int, part: str) -> None:
        parts[part] += seconds.get(pid, 0.0)
        for child in children[pid]:
            add(child, part)

    for top in children[os.getpid()]:
        add(top, _part(top))
    parts["postgres"] = postgres
    return dict(parts)


def per_command(
    before: dict[str, float], after: dict[str, float], commands: int
) -> dict[str, float]:
    """Milliseconds of CPU per command of each part between two readings, and ``total``."""
    spent = {part: after[part] - before.get(part, 0.0) for part in after}
    spent = {part: s for part, s in spent.items() if s > 0 and part not in ("wrk", "?")}
    found = {part: round(s * 1000 / max(commands, 1), 2) for part, s in sorted(spent.items())}
    found["total"] = round(sum(spent.values()) * 1000 / max(commands, 1), 2)
    return found
