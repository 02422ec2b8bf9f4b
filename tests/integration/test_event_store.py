"""The event store on PostgreSQL: a ping a second, not one per checkout; a save in two
round trips."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from application.pipeline import CommandPipeline
from application.retry import RetryPolicy
from application.slices import build_catalog
from application.submission import ResourceExistsError
from domain.show import Show
from infrastructure.event_store import IdlePing, build_application, position_of
from infrastructure.settings import Settings
from interfaces.bootstrap import migrate
from tests.support.pgtrace import traced
from tests.support.submit import submission

pytestmark = pytest.mark.postgres


def test_a_connection_is_pinged_once_a_second_not_at_every_checkout(database_url: str) -> None:
    settings = Settings(database_url=database_url, db_pool_size=1, db_max_overflow=0)
    migrate(settings)
    app = build_application(settings)
    datastore: Any = app.recorder
    pool: Any = datastore.datastore.pool
    assert isinstance(pool._check, IdlePing)
    pings: list[float] = []
    check = pool._check._check

    def counted(conn: Any) -> None:
        pings.append(time.monotonic())
        check(conn)

    pool._check._check = counted
    for _ in range(20):
        with datastore.datastore.get_connection() as conn:
            conn.execute("SELECT 1")
    quick = len(pings)
    time.sleep(1.1)
    with datastore.datastore.get_connection() as conn:
        conn.execute("SELECT 1")
    app.close()

    assert quick <= 1  # the first checkout of a new connection, at most
    assert len(pings) == quick + 1


def test_a_connection_the_server_dropped_is_replaced_at_checkout(database_url: str) -> None:
    settings = Settings(database_url=database_url, db_pool_size=1, db_max_overflow=0)
    migrate(settings)
    app = build_application(settings)
    datastore: Any = app.recorder.datastore  # type: ignore[attr-defined]
    with datastore.get_connection() as conn:
        backend = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
    time.sleep(1.1)  # past the ping interval: the next checkout pings, and replaces it
    with datastore.get_connection() as conn:
        replaced = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
    app.close()

    assert replaced != backend


def test_a_save_is_one_statement_then_its_notification(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No BEGIN and COMMIT around the INSERT: each is a round trip of every save."""
    settings = Settings(database_url=database_url)
    migrate(settings)
    app = build_application(settings)
    datastore: Any = app.recorder.datastore  # type: ignore[attr-defined]
    show = Show.schedule("s1", "Hamlet", "2027-01-01T20:00:00Z", ["A1", "A2"], 100)
    show.reserve_or_wait("r1", ["A1"])
    with traced(datastore, tmp_path / "libpq.trace", monkeypatch) as trace:
        recordings = app.save(show)
    with traced(datastore, tmp_path / "position.trace", monkeypatch) as position_trace:
        position = position_of(app, show.id)
    stored: Show = app.repository.get(show.id)
    app.close()

    # One round trip for the INSERT (it commits on its own), one for the NOTIFY.
    assert trace.round_trips == 2, trace.text
    assert "BEGIN" not in trace.text
    assert "COMMIT" not in trace.text
    # Both events in that one statement, numbered, and read back.
    assert len(recordings) == 2
    assert recordings[0].notification.id < recordings[1].notification.id
    assert stored.version == show.version == 2
    # Its position, as a synchronous answer reads it: one statement, one round trip.
    assert position == recordings[1].notification.id
    assert position_trace.round_trips == 1, position_trace.text


def test_a_create_is_accepted_in_one_statement_that_checks_its_target(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The accept of a create looks for its target in its own INSERT, not in a read
    before it; a taken target records nothing and is refused."""
    settings = Settings(database_url=database_url)
    migrate(settings)
    app = build_application(settings)
    datastore: Any = app.recorder.datastore  # type: ignore[attr-defined]
    pipeline = CommandPipeline(app, build_catalog(), RetryPolicy())
    fields: dict[str, Any] = {
        "title": "T",
        "starts_at": "2027-01-01T20:00:00Z",
        "seats": ["A1"],
        "price_cents": 1,
    }

    with traced(datastore, tmp_path / "libpq.trace", monkeypatch) as trace:
        accepted = pipeline.accept(
            submission(pipeline, "CreateShow", "k1", show_id="new", **fields)
        )
    # As if the command ran: its show exists now.
    app.save(Show.schedule("new", "Hamlet", "2027-01-01T20:00:00Z", ["A1"], 100))
    refused = submission(pipeline, "CreateShow", "k2", show_id="new", **fields)
    with pytest.raises(ResourceExistsError):
        pipeline.accept(refused)
    again = pipeline.accept(submission(pipeline, "CreateShow", "k1", show_id="new", **fields))
    unrecorded = pipeline.get_command(refused.command_id())
    app.close()

    # The INSERT (with its check) and the NOTIFY: no read of the target before.
    assert trace.round_trips == 2, trace.text
    # The first key again is its earlier acceptance, although its target exists now.
    assert again.replayed
    assert again.command.id == accepted.command.id
    assert unrecorded is None


def test_a_long_history_is_read_from_its_snapshot_in_two_round_trips(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A show that sold 60 seats (121 events) is read from its snapshot at 100 and the
    events after it, in two reads; a short one still in one."""
    settings = Settings(
        database_url=database_url, snapshot_interval=50, db_pool_size=1, db_max_overflow=0
    )
    migrate(settings)
    app = build_application(settings)
    datastore: Any = app.recorder.datastore  # type: ignore[attr-defined]
    seats = [f"S{n}" for n in range(60)]
    show = Show.schedule("long", "Hamlet", "2027-01-01T20:00:00Z", seats, 100)
    for n, seat in enumerate(seats):
        show.reserve_or_wait(f"r{n}", [seat])
        show.sell_seats(f"r{n}")
        if n % 7 == 6:
            app.save(show)
    app.save(show)
    short = Show.schedule("short", "Hamlet", "2027-01-01T20:00:00Z", ["A1"], 100)
    app.save(short)
    # Read before, so that the reads traced are not the first of their statements
    # (psycopg prepares a statement run often, in a round trip of its own).
    for _ in range(6):
        app.repository.get(show.id)
        app.repository.get(short.id)
    with traced(datastore, tmp_path / "long.trace", monkeypatch) as long_trace:
        found: Show = app.repository.get(show.id)
    with traced(datastore, tmp_path / "short.trace", monkeypatch) as short_trace:
        app.repository.get(short.id)
    with psycopg.connect(database_url) as conn:
        taken = conn.execute(
            "SELECT originator_version FROM boxoffice_snapshots WHERE originator_id = %s"
            " ORDER BY 1",
            (show.id,),
        ).fetchall()
    app.close()

    assert [row[0] for row in taken] == [50, 100]
    assert found.version == show.version == 121
    assert (found.sold, found.held, found.available) == (show.sold, show.held, show.available)
    assert long_trace.round_trips == 2, long_trace.text
    assert short_trace.round_trips == 1, short_trace.text
