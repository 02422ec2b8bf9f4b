"""Admission control's gauge on PostgreSQL: the registry's waiting and decided commands."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from application.admission import Backlog
from infrastructure.admission_tickets import LATE_SECONDS, PostgresTickets
from infrastructure.event_store import view_on
from projections.command_registry import CommandRegistryProjection, CommandRegistryView
from tests.integration.conftest import Stack
from tests.support.processes import wait_until

pytestmark = [pytest.mark.postgres]


def test_the_backlog_counts_the_commands_waiting_and_those_decided_lately(stack: Stack) -> None:
    accepted = [stack.submit("Bump", f"k{i}", key=f"t{i}") for i in range(5)]
    for acceptance in accepted[:2]:
        stack.container.pipeline.execute(acceptance.command.id, 1, "test")
    datastore = stack.container.app.recorder.datastore  # type: ignore[attr-defined]
    registry = view_on(datastore, CommandRegistryProjection.name, CommandRegistryView)

    app = stack.container.app

    def backlog() -> Backlog:
        return registry.backlog(10.0, app.name, app.recorder.events_table_name)  # type: ignore[attr-defined]

    # Before the registry has any of it, the log's events not yet applied are counted.
    assert (backlog().waiting, backlog().drained) == (3, 0)
    projector = stack.process("projector")
    projector.start()
    try:
        wait_until(lambda: backlog().drained == 2, 30, "the registry")
        reading = backlog()
    finally:
        projector.stop()

    assert (reading.waiting, reading.drained) == (3, 2)
    # The oldest waiting command was accepted a moment ago: the drain is counted since
    # then, over at least a second.
    assert 0 < reading.oldest_seconds < 10
    assert reading.window == max(1.0, reading.oldest_seconds)
    assert reading.rate == 2 / reading.window


def test_a_ticket_is_used_once_when_due_and_dropped_when_long_past(stack: Stack) -> None:
    datastore = stack.container.app.recorder.datastore  # type: ignore[attr-defined]
    tickets = PostgresTickets(datastore)
    assert tickets.issue("bob", "k1", -(LATE_SECONDS + 5), 0) == 0  # far too late
    assert tickets.issue("alice", "k2", 0.5, 0.1) <= 0.5
    # Due after the last one out, whichever comes later.
    assert 19 < tickets.issue("alice", "k1", 20, 0.1) <= 20
    assert 20 < tickets.issue("carol", "k3", 2, 0.5) <= 20.5
    assert tickets.outstanding(30) == 3
    assert tickets.outstanding(5) == 1  # alice's k2; k1 and carol's are due later

    early = tickets.redeem("alice", "k1", room=False)
    assert early is not None
    assert not early.used
    assert 18 < early.due_in <= 20
    # Due, but no room yet: kept for the next try.
    crowded = tickets.redeem("alice", "k2", room=False)
    assert crowded is not None
    assert not crowded.used
    due = tickets.redeem("alice", "k2", room=True)
    assert due is not None
    assert due.used
    assert tickets.redeem("alice", "k2", room=True) is None  # used up
    assert tickets.redeem("bob", "k1", room=True) is None
    assert tickets.redeem("carol", "k9", room=True) is None
    # Early, with room: used.
    found = tickets.redeem("alice", "k1", room=True)
    assert found is not None
    assert found.used
    assert tickets.outstanding(30) == 1


def test_tickets_issued_at_once_by_many_threads_are_each_one_spacing_apart(
    stack: Stack,
) -> None:
    datastore = stack.container.app.recorder.datastore  # type: ignore[attr-defined]
    tickets = PostgresTickets(datastore)
    start = threading.Barrier(8)

    def issue(n: int) -> list[float]:
        start.wait()
        return [tickets.issue(f"c{n}", f"k{i}", 1.0, 0.25) for i in range(5)]

    with ThreadPoolExecutor(8) as pool:
        dues = sorted(due for found in pool.map(issue, range(8)) for due in found)
    # Read back together: the times as the table keeps them, one spacing apart each.
    with datastore.transaction(commit=False) as curs:
        curs.execute("SELECT due_at FROM admission_tickets ORDER BY due_at")
        kept = [row["due_at"] for row in curs.fetchall()]
    assert len(kept) == len(dues) == 40
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(kept)]
    assert min(gaps) == pytest.approx(0.25)
