"""The pipeline's counters as Prometheus exposes them, in one process: what the pipeline
counts through its port, and what a scrape shows of it and of the views."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import Tracking
from prometheus_client.parser import text_string_to_metric_families

from application.event_log import BoxofficeApplication
from application.pipeline import CommandPipeline
from application.retry import RetryPolicy
from application.slices import build_catalog
from infrastructure import metrics
from infrastructure.metrics import PrometheusMetrics, StoreReadings, ViewsCollector
from interfaces.http.limits import Limits
from interfaces.http.problems import Problem
from projections.command_registry import CommandRegistryProjection, CommandRegistryView
from projections.document_view import InMemoryDocumentView, Row
from projections.read_models import InMemoryReadModels
from projections.sagas import stuck_sagas
from projections.views import PROJECTIONS
from tests.support.submit import submission
from tests.support.world import DEADLINE, World

SHOW: dict[str, Any] = {
    "title": "Hamlet",
    "starts_at": "2027-01-01T20:00:00Z",
    "seats": ["A1"],
    "price_cents": 4500,
}


@pytest.fixture(autouse=True)
def one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics.MULTIPROCESS_DIR, raising=False)


def scraped(
    counted: PrometheusMetrics, *collectors: Any
) -> dict[tuple[str, tuple[Any, ...]], float]:
    text = metrics.exposition(counted.registry, *collectors).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_pipeline_counts_new_commands_and_each_attempt_with_its_outcome() -> None:
    app = BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    counted = PrometheusMetrics()
    pipeline = CommandPipeline(app, build_catalog(), RetryPolicy(max_attempts=3), metrics=counted)

    first = pipeline.accept(submission(pipeline, "CreateShow", "k1", show_id="s1", **SHOW))
    pipeline.accept(submission(pipeline, "CreateShow", "k1", show_id="s1", **SHOW))  # a replay
    pipeline.execute(first.command.id, 1, "worker-1")
    pipeline.execute(first.command.id, 1, "worker-2")  # a duplicate delivery: skipped
    missing = pipeline.accept(submission(pipeline, "CancelShow", "k2", show_id="none"))
    pipeline.execute(missing.command.id, 1, "worker-1")  # no such show: a domain failure

    found = scraped(counted)
    create, cancel = ("type", "CreateShow"), ("type", "CancelShow")
    assert found[("boxoffice_commands_accepted_total", (create,))] == 1
    assert found[("boxoffice_commands_accepted_total", (cancel,))] == 1
    attempts = "boxoffice_command_attempts_total"
    assert found[(attempts, (("outcome", "succeeded"), create))] == 1
    assert found[(attempts, (("outcome", "skipped"), create))] == 1
    assert found[(attempts, (("outcome", "failed"), cancel))] == 1
    # Only final outcomes are timed from the accept.
    timed = "boxoffice_command_outcome_seconds_count"
    assert found[(timed, (("outcome", "succeeded"), create))] == 1
    assert found[(timed, (("outcome", "failed"), cancel))] == 1
    assert (timed, (("outcome", "skipped"), create)) not in found


def readings(**changed: Any) -> StoreReadings:
    """What a scrape reads, as fixed figures (``changed`` replaces some)."""
    items: list[dict[str, Any]] = [
        {"name": "shows", "position": 7, "head": 9, "lag": 2, "lag_seconds": 1.5},
        {"name": "sagas", "position": None, "head": 9, "lag": 0, "lag_seconds": 0.0},
    ]
    followers = [{"name": "relay", "position": 8, "lag": 1, "lag_seconds": 0.25}]
    read: dict[str, Any] = {
        "views": lambda: items,
        "followers": lambda: followers,
        "commands": lambda: {"succeeded": 5, "retrying": 1},
        "sagas": lambda: {"held": 2},
        "stuck_sagas": lambda: 1,
        "webhooks": lambda: {"parked": 3, "delivered": 4},
        "queue": lambda: 6,
    }
    return StoreReadings(**{**read, **changed})


def test_a_scrape_shows_each_view_s_position_and_lag_and_says_when_the_store_is_out() -> None:
    counted = PrometheusMetrics()

    found = scraped(counted, ViewsCollector(readings()))

    assert found[("boxoffice_views_up", ())] == 1
    assert found[("boxoffice_log_head", ())] == 9
    assert found[("boxoffice_view_position", (("view", "shows"),))] == 7
    assert found[("boxoffice_view_position", (("view", "sagas"),))] == 0
    assert found[("boxoffice_view_lag_events", (("view", "shows"),))] == 2
    assert found[("boxoffice_view_lag_seconds", (("view", "shows"),))] == 1.5
    assert found[("boxoffice_follower_lag_events", (("follower", "relay"),))] == 1
    assert found[("boxoffice_follower_lag_seconds", (("follower", "relay"),))] == 0.25
    assert found[("boxoffice_commands", (("status", "succeeded"),))] == 5
    assert found[("boxoffice_commands", (("status", "retrying"),))] == 1
    assert found[("boxoffice_sagas", (("state", "held"),))] == 2
    assert found[("boxoffice_sagas_stuck", ())] == 1
    assert found[("boxoffice_webhook_deliveries", (("status", "parked"),))] == 3
    assert found[("boxoffice_queue_messages", ())] == 6

    def unreachable() -> list[dict[str, Any]]:
        raise ConnectionError("the event store cannot be reached")

    out = scraped(counted, ViewsCollector(readings(views=unreachable)))
    assert out[("boxoffice_views_up", ())] == 0
    assert ("boxoffice_log_head", ()) not in out
    assert out[("boxoffice_queue_messages", ())] == 6  # the broker still answers

    def no_broker() -> int:
        raise ConnectionError("the broker cannot be reached")

    alone = scraped(counted, ViewsCollector(readings(queue=no_broker)))
    assert alone[("boxoffice_views_up", ())] == 1
    assert ("boxoffice_queue_messages", ()) not in alone


def test_the_registry_times_each_outcome_it_makes_visible_and_the_limits_count_refusals() -> None:
    world = World(BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}))
    counted = PrometheusMetrics()
    registry = CommandRegistryProjection(
        InMemoryDocumentView(columns=tuple(CommandRegistryView.columns)),
        world.app.repository,
        metrics=counted,
    )
    accepted = world.pipeline.accept(
        submission(world.pipeline, "CreateShow", "k1", show_id="s1", **SHOW)
    )
    world.pipeline.execute(accepted.command.id, 1, "worker-1")
    events = list(world.app.events.get(accepted.command.id))

    registry.process_events([(e, Tracking("log", i)) for i, e in enumerate(events, 1)])

    found = scraped(counted)
    labels = (("outcome", "succeeded"), ("type", "CreateShow"))
    assert found[("boxoffice_command_visible_seconds_count", labels)] == 1
    limits = Limits(rate=1, burst=1, streams=0, clock=lambda: 0.0, refused=counted.limited)
    limits.admit("alice")
    with pytest.raises(Problem):
        limits.admit("alice")
    with pytest.raises(Problem):
        limits.open_stream("alice")
    found = scraped(counted)
    assert found[("boxoffice_requests_limited_total", (("limit", "rate"),))] == 1
    assert found[("boxoffice_requests_limited_total", (("limit", "streams"),))] == 1


def test_a_saga_s_commands_are_counted_as_accepted_and_run() -> None:
    world = World(BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}))
    counted = world.pipeline.metrics = PrometheusMetrics()
    world.create_show(["A1"], 1000)

    world.place("r1", ["A1"])

    found = scraped(counted)
    steps = ("PlaceReservation", "ReserveSeats", "ChargePayment", "ConfirmReservation")
    for command_type in steps:
        labels = (("type", command_type),)
        assert found[("boxoffice_commands_accepted_total", labels)] == 1, command_type
        ran = (("outcome", "succeeded"), ("type", command_type))
        assert found[("boxoffice_command_attempts_total", ran)] == 1, command_type


def test_an_in_memory_view_counts_its_documents_by_a_column_s_value() -> None:
    view = InMemoryDocumentView(columns=("status",))
    rows: dict[UUID, Row] = {
        uuid4(): ({}, {"status": "succeeded"}, 1),
        uuid4(): ({}, {"status": "succeeded"}, 2),
        uuid4(): ({}, {"status": "retrying"}, 3),
        uuid4(): ({}, {"status": None}, 4),
    }

    view.upsert_many(rows, Tracking("Boxoffice", 4))

    assert view.counts("status") == {"succeeded": 2, "retrying": 1, "": 1}


def test_a_saga_waiting_on_a_dead_letter_is_stuck_until_its_deadline_ends_it() -> None:
    world = World(BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}))
    read = InMemoryReadModels(world.app, PROJECTIONS)
    world.create_show(["A1"], 1000)
    world.place("r1", ["A1"])  # paid and confirmed: not stuck
    world.create_show(["B1"], 1000, show_id="s2")

    world.place("r2", ["B1"], "tok_outage", show_id="s2")  # the charge dead-letters

    assert stuck_sagas(read) == 1
    world.pass_time(DEADLINE)  # the saga expires the reservation: done, not stuck
    assert stuck_sagas(read) == 0


def test_a_scrape_reads_again_when_a_process_s_new_file_is_not_written_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client import multiprocess

    empty = tmp_path / "counter_4242.db"
    empty.write_bytes(b"")  # a process has created its file, not yet its header
    reads: list[int] = []
    read = multiprocess.MultiProcessCollector.collect

    def racing(collector: Any) -> Any:
        reads.append(1)
        if len(reads) == 2:
            empty.unlink()  # written meanwhile (here: gone, the process ended)
        return read(collector)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(multiprocess.MultiProcessCollector, "collect", racing)

    assert list(metrics.ProcessFiles(str(tmp_path)).collect()) == []
    assert len(reads) == 2
