"""One reader of the log per process: the followers of a process share one listening
connection and one read per wake, and none of them holds the others back."""

from __future__ import annotations

import threading
import time
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import Notification, StoredEvent

from infrastructure.event_store import build_application
from infrastructure.settings import Settings
from infrastructure.subscription import PENDING_CAP, LogSubscription, subscribe
from infrastructure.view_progress import ViewProgressListener
from tests.integration.test_log_subscription import collecting, counting_pulls
from tests.support.commands import Tally
from tests.support.processes import wait_until
from tests.support.servers import backends

pytestmark = pytest.mark.postgres

TALLY = "tests.support.commands:Tally.Opened"


def listening_backends(database_url: str) -> int:
    """The connections to the test's database that LISTEN."""
    return backends(database_url, "query LIKE 'LISTEN%%'")


def test_the_followers_of_a_process_share_one_read_per_wake(database_url: str) -> None:
    app, _, pulls = counting_pulls(database_url)
    followers = 4
    start = app.recorder.max_notification_id()
    received: list[list[Notification]] = [[] for _ in range(followers)]
    subscriptions = [subscribe(app.recorder, start) for _ in range(followers)]
    threads = [collecting(s, r) for s, r in zip(subscriptions, received, strict=True)]
    saves = 20
    before = len(pulls)
    for n in range(saves):
        app.save(Tally(f"shared-{n}"))
    wait_until(lambda: all(len(r) == saves for r in received), 10, "every follower's events")
    reads = len(pulls) - before
    for subscription in subscriptions:
        subscription.stop()
    for thread in threads:
        thread.join(5)
    app.close()

    # Each follower on its own reads at least once per save it is woken for, 80 in all;
    # one reader for the four reads once per save, and again when a notification came
    # during that read (a busy machine: up to twice per save), and once a second while
    # idle. Below 60 separates the two whatever the machine's speed.
    assert reads < 3 * saves, reads
    assert [[n.id for n in r] for r in received[1:]] == [[n.id for n in received[0]]] * 3


def test_a_follower_that_does_not_take_its_events_holds_no_other_back(
    settings: Settings,
) -> None:
    app = build_application(settings)
    start = app.recorder.max_notification_id()
    slow = subscribe(app.recorder, start)
    quick = subscribe(app.recorder, start)
    received: list[Notification] = []
    quick_thread = collecting(quick, received)
    count = PENDING_CAP * 3
    originator = uuid4()
    app.recorder.insert_events(
        [StoredEvent(originator, v, "bulk:Event", b"{}") for v in range(1, count + 1)]
    )
    # Nobody takes the slow one's events: it is fed up to about its cap, then left out.
    wait_until(lambda: len(received) == count, 30, "the quick follower's events")
    slow_pending = len(slow._pending)
    late: list[Notification] = []
    slow_thread = collecting(slow, late)
    wait_until(lambda: len(late) == count, 30, "the slow follower's events, read on its own")
    for subscription in (slow, quick):
        subscription.stop()
    for thread in (slow_thread, quick_thread):
        thread.join(5)
    app.close()

    assert slow_pending < PENDING_CAP + 500
    assert [n.id for n in late] == [n.id for n in received]


def test_a_process_listens_on_one_connection_for_the_log_and_the_views(
    database_url: str, settings: Settings
) -> None:
    app = build_application(settings)
    datastore: Any = app.recorder.datastore  # type: ignore[attr-defined]
    subscriptions = [subscribe(app.recorder, None, [TALLY]) for _ in range(3)]
    progress = ViewProgressListener(datastore)
    progress.generation("command_registry")
    wait_until(lambda: listening_backends(database_url) >= 1, 10, "a listening connection")
    time.sleep(0.3)  # a second LISTEN connection, were one opened, would show by now
    listening = listening_backends(database_url)
    for subscription in subscriptions:
        subscription.stop()
    progress.close()
    app.close()

    assert listening == 1


def test_when_the_listening_connection_fails_every_follower_hears_of_it_and_can_resume(
    database_url: str, settings: Settings
) -> None:
    app = build_application(settings)
    subscriptions = [subscribe(app.recorder, None) for _ in range(2)]
    errors: list[BaseException] = []

    def iterate(subscription: LogSubscription) -> None:
        try:
            for _ in subscription:
                pass
        except Exception as error:  # noqa: BLE001 - what the test looks at
            errors.append(error)

    threads = [threading.Thread(target=iterate, args=(s,)) for s in subscriptions]
    for thread in threads:
        thread.start()
    wait_until(lambda: listening_backends(database_url) == 1, 10, "a listening connection")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
        )
    for thread in threads:
        thread.join(10)
    # A follower resumes with a new subscription, which listens again.
    received: list[Notification] = []
    again = subscribe(app.recorder, app.recorder.max_notification_id())
    follower = collecting(again, received)
    app.save(Tally("after"))
    wait_until(lambda: len(received) == 1, 10, "the event written after the failure")
    again.stop()
    follower.join(5)
    app.close()

    assert len(errors) == 2
