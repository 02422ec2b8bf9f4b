"""Following the log on PostgreSQL: notifications wake a follower, and none is needed."""

from __future__ import annotations

import threading
import time
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import Notification

from infrastructure.event_store import build_application, migrate
from infrastructure.settings import Settings
from infrastructure.subscription import subscribe

pytestmark = pytest.mark.postgres


def test_an_event_recorded_without_a_notification_is_still_delivered(database_url: str) -> None:
    settings = Settings(database_url=database_url)
    migrate(settings)
    app = build_application(settings)
    received: list[Notification] = []
    subscription = subscribe(app.recorder, None)

    def collect() -> None:
        with subscription:
            for notification in subscription:
                received.append(notification)

    follower = threading.Thread(target=collect)
    follower.start()
    # Written by hand, so no NOTIFY is sent: as if the notification had been lost.
    originator = uuid4()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO boxoffice_events (originator_id, originator_version, topic, state) "
            "VALUES (%s, 1, 'lost:Notified', '{}')",
            (originator,),
        )
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    subscription.stop()
    follower.join(5)
    app.close()

    assert [n.originator_id for n in received] == [originator]
    assert not follower.is_alive()
