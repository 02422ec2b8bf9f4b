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
    """The part a process of ``boxoffice`` runs (``web``, ``worker``...), or the console
    script a baseline's process runs (``gunicorn``, ``celery``), by its command."""
    try:
        argv = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in argv if a]
    if "interfaces.cli.main" in words:
        after = words.index("interfaces.cli.main") + 1
        return words[after] if after < len(words) else "?"
    if not words:
        return "?"
    name = Path(words[0]).name
    # A console script (gunicorn, celery) runs as its interpreter, the script's path next.
    if name.startswith("python") and len(words) > 1 and not words[1].startswith("-"):
        return Path(words[1]).name
    return name


def _table() -> dict[int, list[str]]:
    """Every process's stat fields (those after its name), by pid."""
    found: dict[int, list[str]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                found[int(entry.name)] = fields
    return found


def _children(table: dict[int, list[str]]) -> defaultdict[int, list[int]]:
    """Each process's children, by its pid (the parent's pid is the second field)."""
    children: defaultdict[int, list[int]] = defaultdict(list)
    for pid, fields in table.items():
        children[int(fields[1])].append(pid)
    return children


def descendants(root: int) -> list[int]:
    """Every process under ``root``, at any depth."""
    children = _children(_table())
    found: list[int] = []
    pending = list(children[root])
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children[pid])
    return found


def cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of each part started by this process (its whole tree of
    processes, by the part its top process runs) and of every ``postgres`` process."""
    table = _table()
    children = _children(table)
    # utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    seconds = {pid: (int(f[11]) + int(f[12])) / TICKS for pid, f in table.items()}
    postgres = 0.0
    for pid, used in seconds.items():
        try:
            if (PROC / str(pid) / "comm").read_text().strip() == "postgres":
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
