"""The benchmark's figures: what a baseline's processes are called, Boxoffice's CPU per
command against the hand-built service's and the frameworks', and the long log's
ratios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.cpu import _part
from benchmarks.run import alternating, cpu_ratios, frameworks, long_log_figures, untraced_cpu
from tests.support.processes import wait_until


def started(pid: int) -> None:
    """Wait for the process's command line: a parent may read it before the kernel has
    set it up for the program the child just started."""
    wait_until(lambda: (Path("/proc") / str(pid) / "cmdline").read_bytes() != b"", 10, "exec")


def test_a_console_script_is_named_by_its_script_not_its_interpreter(tmp_path: Path) -> None:
    script = tmp_path / "gunicorn"
    script.write_text("import time\ntime.sleep(30)\n")
    process = subprocess.Popen([sys.executable, str(script), "-w", "2"])
    try:
        started(process.pid)
        assert _part(process.pid) == "gunicorn"
    finally:
        process.kill()
        process.wait()


def test_a_module_run_keeps_its_interpreter_name() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        started(process.pid)
        assert _part(process.pid) == Path(sys.executable).name
    finally:
        process.kill()
        process.wait()


def test_the_frameworks_cost_of_a_command_is_one_request_one_task_and_two_saves() -> None:
    found = frameworks(0.5, {"celery": 1.0, "publisher": 0.25, "total": 1.25}, 0.75)

    assert found == {
        "bare_flask_request": 0.5,
        "bare_celery_task": 1.25,
        "eventsourcing_save": 0.75,
        "request_task_two_saves": 3.25,
    }


def test_boxoffice_cpu_is_its_median_untraced_run_against_the_hand_built_and_the_frameworks() -> (
    None
):
    box = {
        "tracing": {
            "cpu_ms_per_command": {
                "none": [{"total": 9.0}, {"total": 13.0}, {"total": 10.0}],
                "memory": [{"total": 50.0}, {"total": 50.0}, {"total": 50.0}],
            }
        }
    }
    baselines = {
        "hand_built": {"cpu_ms_per_command": {"total": 8.0}},
        "cpu_ms": {"request_task_two_saves": 4.0},
    }

    assert untraced_cpu(box) == 10.0
    assert cpu_ratios(box, baselines) == {"cpu_vs_hand_built": 1.25, "cpu_vs_frameworks": 2.5}


def run_of(accepts: float, end_to_end: float, waited: float, visible: float) -> dict[str, Any]:
    paced = {"prefer_wait_ms": {"p50": waited}, "registry_visible_ms": {"p50": visible}}
    return {
        "accepts_per_s": accepts,
        "end_to_end_per_s": end_to_end,
        "paced": {"25%": paced},
        "samples": [[0.0, int(end_to_end)]],
    }


def test_the_long_log_is_judged_by_the_median_of_its_pairs_not_by_one_run() -> None:
    empty = [run_of(300, 200, 10, 12), run_of(300, 200, 10, 12), run_of(300, 200, 10, 12)]
    # One slow seeded run (a run of this machine can be a tenth slower than the next).
    seeded = [run_of(300, 150, 20, 24), run_of(294, 196, 10, 12), run_of(306, 204, 11, 12)]

    found = long_log_figures(empty, seeded)

    assert found["pair_ratios"]["end to end/s"] == [0.75, 0.98, 1.02]
    assert found["seeded_vs_empty"] == {
        "accepts/s": 1.0,
        "end to end/s": 0.98,
        "Prefer: wait, 25% load, p50 ms": 1.1,
        "registry visible, 25% load, p50 ms": 1.0,
    }
    assert found["figures"]["end to end/s"] == {
        "empty": [200.0, 200.0, 200.0],
        "seeded": [150.0, 196.0, 204.0],
    }
    assert found["samples"] == [[0.0, 150]]


def test_pairs_alternate_which_side_runs_first() -> None:
    assert list(alternating("off", "on", 3)) == [
        (0, "off"),
        (0, "on"),
        (1, "on"),
        (1, "off"),
        (2, "off"),
        (2, "on"),
    ]
