"""The outbox relay over PostgreSQL, with a transport that records what it is handed."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import Tracking

from application.pipeline import CommandPipeline
from application.retry import RetryPolicy
from application.slices import build_catalog
from infrastructure.event_store import build_application, build_tracker
from infrastructure.following import follow_until_stopped
from infrastructure.relay import OutboxRelay
from infrastructure.settings import Settings
from interfaces.bootstrap import migrate
from tests.support.submit import create_show

pytestmark = pytest.mark.postgres


class RecordingTransport:
    """Records each publish; fails the ``fail_at``-th (1-based) once, as a broker might."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.published: list[UUID] = []
        self.fail_at = fail_at
        self.calls = 0

    def publish(
        self, command_id: UUID, attempt: int, eta: datetime | None = None, takeover: bool = False
    ) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise ConnectionError("the broker went away")
        self.published.append(command_id)


def accepted_commands(settings: Settings, count: int) -> list[UUID]:
    app = build_application(settings)
    pipeline = CommandPipeline(app, build_catalog(), RetryPolicy())
    ids = []
    for n in range(count):
        ids.append(create_show(pipeline, f"s{n}").command.id)
    app.close()
    return ids


def relay_of_a_backlog(
    database_url: str, count: int, transport: RecordingTransport
) -> tuple[OutboxRelay, list[UUID]]:
    """A relay over ``transport``, and the ids of the ``count`` commands accepted before
    it runs (in log order)."""
    settings = Settings(database_url=database_url)
    migrate(settings)
    ids = accepted_commands(settings, count)
    relay = OutboxRelay(build_application(settings), build_tracker(settings, "relay"), transport)
    return relay, ids


def relay_until(relay: OutboxRelay, done: Any) -> None:
    """Run the relay in a thread, resuming after errors, until ``done()`` holds (10 s
    at most)."""
    stop = threading.Event()
    app = relay.app
    thread = threading.Thread(target=follow_until_stopped, args=(app, relay, stop, 0.05))
    thread.start()
    deadline = time.monotonic() + 10
    while not done() and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(10)


def test_the_relay_tracks_its_position_once_per_read_of_the_backlog(database_url: str) -> None:
    transport = RecordingTransport()
    relay, ids = relay_of_a_backlog(database_url, 30, transport)
    app, tracker = relay.app, relay.view
    writes: list[Tracking] = []
    insert = tracker.insert_tracking

    def counted(tracking: Tracking) -> None:
        writes.append(tracking)
        insert(tracking)

    tracker.insert_tracking = counted  # type: ignore[method-assign]
    relay_until(relay, lambda: len(transport.published) == 30 and writes)
    position = tracker.max_tracking_id(app.name)
    head = app.recorder.max_notification_id()
    app.close()

    assert transport.published == ids
    assert len(writes) < 30
    assert position == head


def test_a_publish_that_fails_mid_batch_loses_no_message(database_url: str) -> None:
    transport = RecordingTransport(fail_at=5)
    relay, ids = relay_of_a_backlog(database_url, 10, transport)
    relay_until(relay, lambda: set(ids) <= set(transport.published))
    relay.app.close()

    # Published in order; those before the failure may be published twice.
    assert set(transport.published) == set(ids)
    assert [i for n, i in enumerate(transport.published) if i not in transport.published[:n]] == ids
