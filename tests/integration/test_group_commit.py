"""Group commit on PostgreSQL: the accepts that wait on one write share the next
transaction, and each still gets its own answer (its id, or its own error)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError

from application.event_log import AggregatePresentError, BoxofficeApplication
from infrastructure.event_store import build_application
from infrastructure.log_recorder import PLACE_BITS, TransactionOrderedRecorder
from infrastructure.settings import Settings
from interfaces.bootstrap import migrate
from tests.support.commands import Tally
from tests.support.processes import wait_until
from tests.support.servers import backends

pytestmark = pytest.mark.postgres


def recorder_of(app: BoxofficeApplication) -> TransactionOrderedRecorder:
    recorder = app.recorder
    assert isinstance(recorder, TransactionOrderedRecorder)
    return recorder


@contextmanager
def version_one_held(
    database_url: str, recorder: TransactionOrderedRecorder, key: str
) -> Iterator[psycopg.Connection[Any]]:
    """A transaction, left open, that has written version 1 of ``Tally(key)``: a save of
    that version waits for it to end (commit: the save then finds its version taken)."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            psycopg.sql.SQL(
                "INSERT INTO {0}.{1} (originator_id, originator_version, topic, state, "
                "notification_id) VALUES (%s, 1, 'held', '', "
                "(pg_current_xact_id()::text::bigint << 16) + 1)"
            ).format(
                psycopg.sql.Identifier(recorder.datastore.schema),
                psycopg.sql.Identifier(recorder.events_table_name),
            ),
            [Tally.create_id(key)],
        )
        yield conn


def save_in_thread(
    app: BoxofficeApplication, key: str, results: dict[str, Any], **kw: Any
) -> threading.Thread:
    def save() -> None:
        try:
            results[key] = app.save(Tally(key), grouped=True, **kw)[0].notification.id
        except Exception as error:  # noqa: BLE001 - the test looks at it
            results[key] = error

    thread = threading.Thread(target=save)
    thread.start()
    return thread


def transaction_of(notification_id: int) -> int:
    return notification_id >> PLACE_BITS


@pytest.fixture
def app(database_url: str) -> Iterator[BoxofficeApplication]:
    settings = Settings(database_url=database_url, db_pool_size=12)
    migrate(settings)
    app = build_application(settings)
    yield app
    app.close()


def test_the_accepts_that_wait_on_a_write_commit_together(
    app: BoxofficeApplication, database_url: str
) -> None:
    recorder = recorder_of(app)
    group = recorder._group
    assert group is not None
    results: dict[str, Any] = {}
    with version_one_held(database_url, recorder, "first") as blocker:
        first = save_in_thread(app, "first", results)
        wait_until(lambda: blocker_waited_on(database_url), 10, "the first write to wait")
        queued = [save_in_thread(app, f"queued-{n}", results) for n in range(10)]
        wait_until(lambda: group.queued == 10, 10, "ten writes queued")
        blocker.rollback()
    for thread in [first, *queued]:
        thread.join(10)

    assert all(isinstance(id_, int) for id_ in results.values()), results
    transactions = {transaction_of(results[f"queued-{n}"]) for n in range(10)}
    assert len(transactions) == 1
    assert transaction_of(results["first"]) not in transactions
    # Each found its own row in the log.
    assert {e.originator_id for e in recorder.select_notifications(0, 100)} == {
        Tally.create_id(key) for key in results
    }


def test_a_write_of_the_group_fails_alone(app: BoxofficeApplication, database_url: str) -> None:
    recorder = recorder_of(app)
    group = recorder._group
    assert group is not None
    present = Tally("present")
    app.save(present)
    results: dict[str, Any] = {}
    with version_one_held(database_url, recorder, "taken") as blocker:
        taken = save_in_thread(app, "taken", results)
        wait_until(lambda: blocker_waited_on(database_url), 10, "the first write to wait")
        others = [save_in_thread(app, f"other-{n}", results) for n in range(3)]
        # A create whose target has events, and the same aggregate twice.
        others.append(save_in_thread(app, "guarded", results, absent=present.id))
        twice: dict[str, Any] = {}
        others.append(save_in_thread(app, "other-0", twice))
        wait_until(lambda: group.queued == 5, 10, "five writes queued")
        blocker.commit()
    for thread in [taken, *others]:
        thread.join(10)

    assert isinstance(results["taken"], IntegrityError)
    assert isinstance(results["guarded"], AggregatePresentError)
    written = [results[f"other-{n}"] for n in range(1, 3)]
    assert all(isinstance(id_, int) for id_ in written), results
    # One of the two saves of other-0 was recorded, the other found its version taken.
    pair = [results["other-0"], twice["other-0"]]
    assert sorted(type(outcome).__name__ for outcome in pair) == ["IntegrityError", "int"]
    assert len({transaction_of(id_) for id_ in written}) == 1


def test_a_write_alone_commits_at_once(app: BoxofficeApplication) -> None:
    recording = app.save(Tally("alone"), grouped=True)

    assert app.repository.get(Tally.create_id("alone")).version == 1
    assert recording[0].notification.id > 0


def blocker_waited_on(database_url: str) -> bool:
    """Whether a backend of the test's database waits for a lock (the held version)."""
    return backends(database_url, "wait_event_type = 'Lock'") > 0
