"""``/metrics`` on the real service: the counters of two gunicorn processes and of two
Celery pool processes add up, parse with prometheus_client's own parser, and move as
commands run; each view's lag is read from the store."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from projections.views import PROJECTIONS
from tests.e2e.conftest import ADMIN_TOKEN, TOKEN, LiveService, create_show, log_lines
from tests.support.processes import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]
SHOWS = 16


def samples(text: str) -> Iterator[Sample]:
    for family in text_string_to_metric_families(text):
        yield from family.samples


def value(text: str, name: str, **labels: str) -> float:
    """The sample ``name`` with ``labels`` (0 before anything was counted)."""
    found = [s.value for s in samples(text) if s.name == name and s.labels == labels]
    return found[0] if found else 0.0


def gauge(text: str, name: str, **labels: str) -> float:
    """The sample ``name`` with ``labels``, which must be there."""
    (found,) = [s.value for s in samples(text) if s.name == name and s.labels == labels]
    return found


def worker_text(live: LiveService) -> str:
    with urllib.request.urlopen(live.worker_metrics, timeout=10) as answer:  # noqa: S310
        return str(answer.read().decode())


def projector_text(live: LiveService) -> str:
    with urllib.request.urlopen(live.projector_metrics, timeout=10) as answer:  # noqa: S310
        return str(answer.read().decode())


def pids_of(live: LiveService, part: str, command_ids: set[str]) -> set[int]:
    """The processes of ``part`` whose log lines name one of ``command_ids``."""
    return {line["pid"] for line in log_lines(live, part) if line.get("command_id") in command_ids}


def test_counters_of_every_web_and_worker_process_add_up_as_commands_run(
    live: LiveService,
) -> None:
    admin = live.client(ADMIN_TOKEN)
    before = admin.request_text("GET", "/metrics")
    worker_before = worker_text(live)
    projector_before = projector_text(live)
    attempts = {"type": "CreateShow", "outcome": "succeeded"}

    # A burst from several clients at once, so that both processes of each part get some.
    with ThreadPoolExecutor(8) as clients:
        shows = [uuid.uuid4().hex[:10] for _ in range(SHOWS)]
        created = list(clients.map(lambda show: create_show(live, show, wait=False), shows))
    ids = {body["command_id"] for body in created}

    def worker_counted() -> bool:
        counted = value(worker_text(live), "boxoffice_command_attempts_total", **attempts)
        return (
            counted - value(worker_before, "boxoffice_command_attempts_total", **attempts) >= SHOWS
        )

    wait_until(worker_counted, 30, "the worker's counters to count every attempt")
    after = admin.request_text("GET", "/metrics")
    worker_after = worker_text(live)

    accepted = "boxoffice_commands_accepted_total"
    assert (
        value(after, accepted, type="CreateShow") - value(before, accepted, type="CreateShow")
        == SHOWS
    )
    attempted = "boxoffice_command_attempts_total"
    assert (
        value(worker_after, attempted, **attempts) - value(worker_before, attempted, **attempts)
        == SHOWS
    )
    timed = "boxoffice_command_outcome_seconds_count"
    assert value(worker_after, timed, **attempts) - value(worker_before, timed, **attempts) == SHOWS
    # Those sums are over processes: the commands were taken by both of each.
    assert len(pids_of(live, "web", ids)) == 2
    assert len(pids_of(live, "worker", ids)) == 2

    # The views, read from the store: up, each with a position and a lag.
    assert gauge(after, "boxoffice_views_up") == 1
    head = gauge(after, "boxoffice_log_head")
    for projection in PROJECTIONS:
        assert 0 <= gauge(after, "boxoffice_view_position", view=projection.name) <= head
        assert gauge(after, "boxoffice_view_lag_events", view=projection.name) >= 0
    # The registry has applied the shows' commands (their outcomes were awaited).
    assert gauge(after, "boxoffice_view_position", view="command_registry") > 0
    # What the registry holds, by status, read from PostgreSQL when scraped.
    wait_until(
        lambda: (
            gauge(admin.request_text("GET", "/metrics"), "boxoffice_commands", status="succeeded")
            >= SHOWS
        ),
        30,
        "the registry to count every command succeeded",
    )
    # The projector timed each outcome from its accept to the registry.
    visible = "boxoffice_command_visible_seconds_count"
    wait_until(
        lambda: (
            value(projector_text(live), visible, **attempts)
            - value(projector_before, visible, **attempts)
            == SHOWS
        ),
        30,
        "the projector to time every outcome made visible",
    )
    # The followers, the sagas stuck, the webhooks and the queue, read when scraped.
    final = admin.request_text("GET", "/metrics")
    for follower in ("relay", "saga_runner"):
        assert gauge(final, "boxoffice_follower_lag_events", follower=follower) >= 0
        assert gauge(final, "boxoffice_follower_lag_seconds", follower=follower) >= 0
    for projection in PROJECTIONS:
        assert gauge(final, "boxoffice_view_lag_seconds", view=projection.name) >= 0
    assert gauge(final, "boxoffice_sagas_stuck") >= 0
    assert gauge(final, "boxoffice_queue_messages") >= 0


def test_metrics_take_the_admin_scope(live: LiveService) -> None:
    assert live.client(None).request("GET", "/metrics").status == 401
    assert live.client(TOKEN).request("GET", "/metrics").status == 403
