"""A part whose thread fails ends, rather than live on with work that nobody does."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from infrastructure.leased_work import PartFailedError, run_together
from tests.support.processes import ROOT


def test_the_first_thread_to_fail_stops_the_others_and_the_part() -> None:
    stop = threading.Event()
    ended: list[str] = []

    def works() -> None:
        stop.wait(30)
        ended.append("works")

    def fails() -> None:
        raise RuntimeError("the store went away while building")

    with pytest.raises(PartFailedError, match="segment#1/2 failed: the store went away"):
        run_together([("segment#0/2", works), ("segment#1/2", fails)], stop)

    assert stop.is_set()
    assert ended == ["works"]


def test_threads_that_end_cleanly_end_the_part_cleanly() -> None:
    stop = threading.Event()
    ran: list[int] = []

    run_together([(f"job-{i}", lambda i=i: ran.append(i)) for i in range(3)], stop)  # type: ignore[misc]

    assert sorted(ran) == [0, 1, 2]
    assert not stop.is_set()


def test_a_segmented_saga_runner_that_cannot_reach_the_store_exits_1() -> None:
    # Before, each segment's thread died building its runner while the process lived on
    # as a member of the shares, so the other runner took only its share and a segment
    # had no holder.
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing",
        "DB_CONNECT_TIMEOUT": "1",
        "SAGA_SEGMENTS": "2",
    }
    done = subprocess.run(
        [sys.executable, "-m", "interfaces.cli.main", "saga-runner"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1, done.stderr[-2000:]
    assert "the event store cannot be reached" in done.stderr
