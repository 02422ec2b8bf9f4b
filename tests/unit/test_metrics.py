"""The pipeline's counters as Prometheus exposes them, in one process: what the pipeline
counts through its port, and what a scrape shows of it and of the views."""

from __future__ import annotations

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
from infrastructure.metrics import PrometheusMetrics, ViewsCollector
from projections.document_view import InMemoryDocumentView, Row
from tests.support.submit import submission
from tests.support.world import World

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


def test_a_scrape_shows_each_view_s_position_and_lag_and_says_when_the_store_is_out() -> None:
    counted = PrometheusMetrics()
    items: list[dict[str, Any]] = [
        {"name": "shows", "position": 7, "head": 9, "lag": 2},
        {"name": "sagas", "position": None, "head": 9, "lag": 0},
    ]

    commands = {"succeeded": 5, "retrying": 1}
    found = scraped(counted, ViewsCollector(lambda: items, lambda: commands, lambda: {"held": 2}))

    assert found[("boxoffice_views_up", ())] == 1
    assert found[("boxoffice_log_head", ())] == 9
    assert found[("boxoffice_view_position", (("view", "shows"),))] == 7
    assert found[("boxoffice_view_position", (("view", "sagas"),))] == 0
    assert found[("boxoffice_view_lag_events", (("view", "shows"),))] == 2
    assert found[("boxoffice_commands", (("status", "succeeded"),))] == 5
    assert found[("boxoffice_commands", (("status", "retrying"),))] == 1
    assert found[("boxoffice_sagas", (("state", "held"),))] == 2

    def unreachable() -> list[dict[str, Any]]:
        raise ConnectionError("the event store cannot be reached")

    out = scraped(counted, ViewsCollector(unreachable, dict, dict))
    assert out[("boxoffice_views_up", ())] == 0
    assert ("boxoffice_log_head", ()) not in out


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
