"""Reads that wait for a view (Consistency-Token) are woken by its commits, not by polling."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from psycopg.rows import tuple_row
from psycopg.sql import SQL

from application.pipeline import CommandPipeline
from application.queries import Between, OneOf
from application.retry import RetryPolicy
from application.slices import build_catalog
from domain.show import Show
from infrastructure.event_store import build_application, view_on
from infrastructure.postgres_read_models import PostgresReadModels
from infrastructure.settings import Settings
from infrastructure.view_progress import ViewProgressListener
from interfaces.http import create_app
from projections import document_view, read_models
from projections.read_models import ReadModels
from projections.views import PROJECTIONS, PROJECTIONS_BY_NAME
from tests.integration.conftest import Stack
from tests.support.pgtrace import traced
from tests.support.processes import running
from tests.support.submit import create_show

pytestmark = pytest.mark.postgres

# Events of topics no view follows, recorded after the log's last analyze.
OTHER_EVENTS = 20_000


def test_a_read_waiting_on_a_view_is_woken_by_the_views_commit(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No look again before the wait's end but for a notification.
    monkeypatch.setattr(read_models, "PROGRESS_FALLBACK_SECONDS", 60.0)
    app = build_application(settings)
    datastore = app.recorder.datastore  # type: ignore[attr-defined]
    shows = PROJECTIONS_BY_NAME["shows"]
    view = view_on(datastore, "shows", shows.view_class)
    listener = ViewProgressListener(datastore)
    models = ReadModels(app, [shows], {"shows": view}, listener)
    show = Show.schedule("s1", "Hamlet", "2027-01-01T20:00:00Z", ["A1"], 100)
    recordings = app.save(show)
    position = recordings[-1].notification.id

    def project_later() -> None:
        time.sleep(0.5)
        (domain_event,) = app.events.get(show.id)
        shows(view, app.repository).process_events([(domain_event, Tracking(app.name, position))])

    projecting = threading.Thread(target=project_later)
    projecting.start()
    started = time.monotonic()
    reached = models.await_reached("shows", position, 10)
    waited = time.monotonic() - started
    projecting.join()
    listener.close()
    app.close()

    assert reached
    assert waited < 5


def test_which_views_caught_up_is_one_query_that_agrees_with_asking_each_view(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = build_application(settings)
    datastore = app.recorder.datastore  # type: ignore[attr-defined]
    views = {
        name: view_on(datastore, name, p.view_class) for name, p in PROJECTIONS_BY_NAME.items()
    }
    show = Show.schedule("s1", "Hamlet", "2027-01-01T20:00:00Z", ["A1"], 100)
    show_position = app.save(show)[-1].notification.id
    pipeline = CommandPipeline(app, build_catalog(), RetryPolicy())
    accepted = create_show(pipeline, "s2")
    # The shows view has applied its event; the registry has not applied the command's.
    (scheduled,) = app.events.get(show.id)
    shows = PROJECTIONS_BY_NAME["shows"]
    shows(views["shows"], app.repository).process_events(
        [(scheduled, Tracking(app.name, show_position))]
    )
    each = ReadModels(app, PROJECTIONS, views).frontiers(list(views))
    connections: list[object] = []
    get_connection = datastore.get_connection

    def counted() -> object:
        connections.append(object())
        return get_connection()

    monkeypatch.setattr(datastore, "get_connection", counted)
    together = PostgresReadModels(app, PROJECTIONS, views).frontiers(list(views))
    app.close()

    assert together == each
    assert together["shows"] is None
    assert together["command_registry"] == accepted.position
    assert len(connections) == 1


def test_which_views_caught_up_steps_over_other_topics_on_statistics_of_a_smaller_log(
    settings: Settings,
) -> None:
    """A log that grew since its last analyze (a new deployment after its first burst)
    must not make every registry read walk the events of other topics."""
    app = build_application(settings)
    datastore = app.recorder.datastore  # type: ignore[attr-defined]
    table = app.recorder.events_table_name  # type: ignore[attr-defined]
    with datastore.get_connection() as conn:
        conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")

    def record(events: int, topic: str) -> None:
        app.recorder.insert_events(
            [StoredEvent(uuid.uuid4(), 1, topic, b"{}") for _ in range(events)]
        )

    record(30, "tests:Unfollowed")
    with datastore.get_connection() as conn:
        conn.execute(f"ANALYZE {table}")
    for _ in range(OTHER_EVENTS // 5_000):
        record(5_000, "tests:Unfollowed")
    views = {
        name: view_on(datastore, name, p.view_class) for name, p in PROJECTIONS_BY_NAME.items()
    }
    models = PostgresReadModels(app, PROJECTIONS, views)
    statement, params = models.frontiers_statement(list(views))
    with datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
        row = curs.execute(
            SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ") + statement, params
        ).fetchone()
    app.close()

    assert row is not None
    plan = row[0][0]["Plan"]
    pages = plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
    topics = sum(len(PROJECTIONS_BY_NAME[name].event_topics()) for name in views)
    # A few index pages per topic probed, not the thousands behind the views' positions.
    assert pages <= 5 * topics, (pages, topics)


def test_a_views_read_is_one_round_trip(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every registry read (and a list) is one SELECT, not BEGIN, SELECT, ROLLBACK."""
    app = build_application(settings)
    datastore = app.recorder.datastore  # type: ignore[attr-defined]
    view = view_on(datastore, "shows", PROJECTIONS_BY_NAME["shows"].view_class)
    key = uuid.uuid4()
    view.upsert_many({key: ({"title": "T"}, {}, 7)}, Tracking(app.name, 7))
    with traced(datastore, tmp_path / "libpq.trace", monkeypatch) as trace:
        found = view.get(key)
        listed = view.page({}, None, 10)
    app.close()

    assert found == {"title": "T", "position": 7}
    documents, _ = listed
    assert [document["title"] for document in documents] == ["T"]
    assert trace.round_trips == 2, trace.text


def test_a_views_write_is_one_statement_and_its_notification(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's rows and the view's position are one statement (not BEGIN, the rows,
    the position, COMMIT), then the notification; a position the view has passed
    writes nothing."""
    app = build_application(settings)
    datastore = app.recorder.datastore  # type: ignore[attr-defined]
    view = view_on(
        datastore, "command_registry", PROJECTIONS_BY_NAME["command_registry"].view_class
    )
    first, second = uuid.uuid4(), uuid.uuid4()
    submitted = datetime(2026, 11, 27, tzinfo=UTC)
    values = {
        "status": "accepted",
        "type": "CreateShow",
        "client": "c",
        "aggregate_id": uuid.uuid4(),
        "correlation_id": None,
        "resource": "/shows/x",
        "submitted_at": submitted,
    }
    rows = {first: ({"n": 1}, values, 5), second: ({"n": 2}, {**values, "status": "x"}, 7)}
    for warm_up in range(1, 5):
        # Each of the pool's connections prepares the statement once, a round trip.
        view.upsert_many({first: ({"n": 0}, values, warm_up)}, Tracking(app.name, warm_up))
    with traced(datastore, tmp_path / "libpq.trace", monkeypatch) as trace:
        view.upsert_many(rows, Tracking(app.name, 7))
    with pytest.raises(IntegrityError):
        view.upsert_many({first: ({"n": 3}, values, 7)}, Tracking(app.name, 7))
    found = view.get(first), view.get(second)
    listed, _ = view.page({"status": OneOf(("x",)), "submitted_at": Between(submitted)}, None, 10)
    position = view.max_tracking_id(app.name)
    app.close()

    assert trace.round_trips == 2, trace.text
    assert "BEGIN" not in trace.text
    assert found == ({"n": 1, "position": 5}, {"n": 2, "position": 7})
    assert [document["n"] for document in listed] == [2]
    assert position == 7


def test_a_large_batch_is_written_whole_or_not_at_all(settings: Settings) -> None:
    """A batch too large for one statement (a rebuild's) is pipelined in a
    transaction: a position the view has passed writes none of its rows."""
    app = build_application(settings)
    datastore = app.recorder.datastore  # type: ignore[attr-defined]
    view = view_on(datastore, "shows", PROJECTIONS_BY_NAME["shows"].view_class)
    size = document_view.ONE_STATEMENT_ROWS + 1
    keys = [uuid.uuid4() for _ in range(size)]
    view.upsert_many({keys[0]: ({"n": 0}, {}, 9)}, Tracking(app.name, 9))
    with pytest.raises(IntegrityError):
        view.upsert_many({key: ({"n": 1}, {}, 9) for key in keys}, Tracking(app.name, 9))
    unwritten = view.get(keys[0]), view.get(keys[-1])
    view.upsert_many({key: ({"n": 2}, {}, 10) for key in keys}, Tracking(app.name, 10))
    written, _ = view.page({}, None, 2 * size)
    app.close()

    assert unwritten == ({"n": 0, "position": 9}, None)
    assert len(written) == size
    assert {document["n"] for document in written} == {2}


def test_an_outcome_the_registry_has_not_applied_yet_still_gives_its_consistency_token(
    database_url: str, queue_name: str, tmp_path: Path
) -> None:
    stack = Stack(database_url, "memory://", queue_name, tmp_path)
    try:
        client = create_app(stack.container).test_client()
        show_id = str(uuid.uuid4())
        created = stack.submit(
            "CreateShow",
            show_id=show_id,
            title="Hamlet",
            starts_at="2027-01-01T20:00:00Z",
            seats=["A1"],
            price_cents=100,
        )
        # Run, with no projector: the outcome is in the log and in no view.
        stack.container.pipeline.execute(created.command.id, 1, "test")

        entry = client.get(f"/commands/{created.command.id}").get_json()
        assert entry["status"] == "succeeded"
        token = entry["consistency_token"]
        assert token is not None
        assert created.position is not None
        assert int(token) > created.position
        behind = client.get(
            f"/shows/{show_id}", headers={"Consistency-Token": token, "Prefer": "wait=0.2"}
        )
        assert behind.status_code == 503
        assert behind.get_json()["type"].endswith("not-caught-up")

        with running(stack.process("projector")):
            read = client.get(
                f"/shows/{show_id}", headers={"Consistency-Token": token, "Prefer": "wait=20"}
            )
        assert read.status_code == 200
        assert read.get_json()["title"] == "Hamlet"
    finally:
        stack.container.close()
