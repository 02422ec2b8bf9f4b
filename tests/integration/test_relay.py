"""The relay's safety net over PostgreSQL, with a transport that records what it is
handed: it publishes, as takeovers, the accepts nobody marked published."""

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
from infrastructure.direct_publish import PublishedMarks
from infrastructure.event_store import build_application, build_tracker
from infrastructure.following import follow_until_stopped
from infrastructure.relay import SAFETY_NET_TRACKER, SafetyNet
from infrastructure.settings import Settings
from interfaces.bootstrap import migrate
from tests.support.submit import create_show

pytestmark = pytest.mark.postgres


class RecordingTransport:
    """Records each publish; fails the ``fail_at``-th (1-based) once, as a broker might."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.published: list[UUID] = []
        self.takeovers: list[bool] = []
        self.fail_at = fail_at
        self.calls = 0

    def publish(
        self, command_id: UUID, attempt: int, eta: datetime | None = None, takeover: bool = False
    ) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise ConnectionError("the broker went away")
        self.published.append(command_id)
        self.takeovers.append(takeover)


def accepted_commands(settings: Settings, count: int) -> list[UUID]:
    app = build_application(settings)
    pipeline = CommandPipeline(app, build_catalog(), RetryPolicy())
    ids = []
    for n in range(count):
        ids.append(create_show(pipeline, f"s{n}").command.id)
    app.close()
    return ids


def net_of_a_backlog(
    database_url: str, count: int, transport: RecordingTransport, grace: float = 0.0
) -> tuple[SafetyNet, list[UUID]]:
    """A safety net over ``transport``, and the ids of the ``count`` commands accepted
    before it runs (in log order), none of them marked published."""
    settings = Settings(database_url=database_url)
    migrate(settings)
    ids = accepted_commands(settings, count)
    app = build_application(settings)
    marks = PublishedMarks(app.recorder.datastore)  # type: ignore[attr-defined]
    net = SafetyNet(app, build_tracker(settings, SAFETY_NET_TRACKER), transport, marks, grace)
    return net, ids


def net_until(net: SafetyNet, done: Any) -> None:
    """Run the safety net in a thread, resuming after errors, until ``done()`` holds (10 s
    at most)."""
    stop = threading.Event()
    app = net.app
    thread = threading.Thread(target=follow_until_stopped, args=(app, net, stop, 0.05))
    thread.start()
    deadline = time.monotonic() + 10
    while not done() and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(10)


def test_the_net_tracks_its_position_once_per_read_of_the_backlog(database_url: str) -> None:
    transport = RecordingTransport()
    net, ids = net_of_a_backlog(database_url, 30, transport)
    app, tracker = net.app, net.view
    writes: list[Tracking] = []
    insert = tracker.insert_tracking

    def counted(tracking: Tracking) -> None:
        writes.append(tracking)
        insert(tracking)

    tracker.insert_tracking = counted  # type: ignore[method-assign]
    net_until(net, lambda: len(transport.published) == 30 and writes)
    position = tracker.max_tracking_id(app.name)
    head = app.recorder.max_notification_id()
    app.close()

    assert transport.published == ids
    # Each as a takeover: its run takes the lease, as it may have been published before.
    assert all(transport.takeovers)
    assert len(writes) < 30
    assert position == head


def test_a_publish_that_fails_mid_batch_loses_no_message(database_url: str) -> None:
    transport = RecordingTransport(fail_at=5)
    net, ids = net_of_a_backlog(database_url, 10, transport)
    net_until(net, lambda: set(ids) <= set(transport.published))
    net.app.close()

    # Published in order; those before the failure may be published twice.
    assert set(transport.published) == set(ids)
    assert [i for n, i in enumerate(transport.published) if i not in transport.published[:n]] == ids


def test_the_net_publishes_only_what_nobody_marked_published(database_url: str) -> None:
    transport = RecordingTransport()
    net, ids = net_of_a_backlog(database_url, 5, transport)
    assert net.marks is not None
    net.marks.mark(ids[1:4])
    net_until(net, lambda: net.view.max_tracking_id(net.app.name) is not None)
    left = net.marks.take(ids)
    net.app.close()

    assert transport.published == [ids[0], ids[4]]
    assert left == set()  # the marks it passed are taken


def test_an_accept_younger_than_the_grace_is_neither_published_nor_passed(
    database_url: str,
) -> None:
    transport = RecordingTransport()
    net, _ = net_of_a_backlog(database_url, 1, transport, grace=600)
    (notification,) = net.app.recorder.select_notifications(1, 10, topics=net.event_topics())
    event = net.app.mapper.to_domain_event(notification)
    net.stop.set()  # the relay's term ends while it waits for the accept's grace

    net.process_events([(event, Tracking(net.app.name, notification.id))])
    position = net.view.max_tracking_id(net.app.name)
    net.app.close()

    assert transport.published == []
    assert position is None  # the next relay takes it up from here


def test_the_net_starts_where_the_relay_of_an_earlier_release_was(database_url: str) -> None:
    transport = RecordingTransport()
    settings = Settings(database_url=database_url)
    net, _ = net_of_a_backlog(database_url, 3, transport)
    relay = build_tracker(settings, "relay")
    head = net.app.recorder.max_notification_id()
    assert head is not None
    relay.insert_tracking(Tracking(net.app.name, head))

    net.seed(relay)
    net.seed(relay)  # once only
    (later,) = accepted_commands(settings, 1)
    net_until(net, lambda: bool(transport.published))
    net.app.close()

    # The three the earlier relay had published are not published again.
    assert transport.published == [later]
