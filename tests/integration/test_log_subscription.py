"""Following the log on PostgreSQL: notifications wake a follower, and none is needed."""

from __future__ import annotations

import random
import threading
import time
from typing import Any, cast
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.utils import get_topic

from application.command import Command
from application.command_watcher import CommandWatcher
from application.event_log import BoxofficeApplication
from application.pipeline import CommandPipeline
from application.retry import RetryPolicy
from application.slices import build_catalog
from infrastructure.event_store import build_application, event_store_env, position_of
from infrastructure.log_recorder import (
    LogAheadOfTransactionIdsError,
    TransactionOrderedRecorder,
    wake_payload,
    wakes,
)
from infrastructure.settings import Settings
from infrastructure.subscription import LogSubscription, subscribe
from interfaces.bootstrap import migrate
from tests.support.commands import Tally
from tests.support.submit import create_show

pytestmark = pytest.mark.postgres


def collecting(subscription: LogSubscription, received: list[Notification]) -> threading.Thread:
    """A started thread appending each notification of ``subscription`` to ``received``
    until the subscription is stopped."""

    def collect() -> None:
        with subscription:
            for notification in subscription:
                received.append(notification)

    thread = threading.Thread(target=collect)
    thread.start()
    return thread


def counting_pulls(
    database_url: str,
) -> tuple[BoxofficeApplication, TransactionOrderedRecorder, list[int]]:
    """The event-store application on ``database_url``, its recorder, and the list its
    followers' reads of the log are appended to (each read's start position)."""
    settings = Settings(database_url=database_url)
    migrate(settings)
    app = build_application(settings)
    recorder = app.recorder
    assert isinstance(recorder, TransactionOrderedRecorder)
    pulls: list[int] = []
    follow_log = recorder.follow

    def counted(after: int, limit: int, topics: Any = ()) -> Any:
        pulls.append(after)
        return follow_log(after, limit, topics)

    recorder.follow = counted
    return app, recorder, pulls


def settled(pulls: list[int]) -> int:
    """How many reads were made once the follower's first read is done and it sleeps."""
    deadline = time.monotonic() + 5
    while not pulls and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    return len(pulls)


def test_an_event_recorded_without_a_notification_is_still_delivered(
    database_url: str, settings: Settings
) -> None:
    app = build_application(settings)
    received: list[Notification] = []
    subscription = subscribe(app.recorder, None)
    follower = collecting(subscription, received)
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


class PausingRecorder(TransactionOrderedRecorder):
    """The real recorder, with a hook between a write's INSERT and its commit (a commit
    that takes long: its WAL flush, a server under load)."""

    pause_next = threading.Event()
    paused = threading.Event()
    release = threading.Event()

    def _write(self, conn: Any, stored_events: Any, **kwargs: Any) -> Any:
        # The INSERT in a transaction of its own, so that the pause falls before its commit.
        with conn.transaction():
            return super()._write(conn, stored_events, **kwargs)

    def _fetch_ids_after_insert_events(self, curs: Any, stored_events: Any, **kwargs: Any) -> Any:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        if self.pause_next.is_set():
            self.pause_next.clear()
            self.paused.set()
            self.release.wait(10)
        return ids


class JitteryRecorder(TransactionOrderedRecorder):
    """The real recorder, with the interleavings that would make a follower skip:
    a transaction id taken long before the INSERT, and a pause before the commit."""

    def _write(self, conn: Any, stored_events: Any, **kwargs: Any) -> Any:
        with conn.transaction():
            if random.random() < 0.5:
                conn.execute("SELECT pg_current_xact_id(), pg_sleep(%s)", (random.random() / 200,))
            return super()._write(conn, stored_events, **kwargs)

    def _fetch_ids_after_insert_events(self, curs: Any, stored_events: Any, **kwargs: Any) -> Any:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        time.sleep(random.random() / 200)
        return ids


def application_with(settings: Settings, recorder: type) -> BoxofficeApplication:
    env = event_store_env(settings)
    env["APPLICATION_RECORDER_TOPIC"] = f"{recorder.__module__}:{recorder.__qualname__}"
    return BoxofficeApplication(env=env)


def test_an_event_committed_first_waits_for_the_older_write_still_in_flight(
    settings: Settings,
) -> None:
    app = application_with(settings, PausingRecorder)
    recorder = app.recorder
    assert isinstance(recorder, PausingRecorder)
    older, newer = Tally("older"), Tally("newer")
    PausingRecorder.pause_next.set()
    writer = threading.Thread(target=app.save, args=(older,))
    writer.start()
    assert PausingRecorder.paused.wait(10)
    # "older" is inserted, not committed; "newer" is inserted and committed after it.
    app.save(newer)

    held = recorder.follow(0, 10)
    held_by_select = recorder.select_notifications(None, 10)
    head_while_held = recorder.max_notification_id()
    PausingRecorder.release.set()
    writer.join(10)
    settled = recorder.follow(0, 10)
    app.close()

    assert (held.notifications, held.seen, held.held_back) == ([], 0, True)
    assert held_by_select == []
    assert head_while_held is None
    assert [n.originator_id for n in settled.notifications] == [older.id, newer.id]
    assert settled.seen == settled.notifications[-1].id
    assert not settled.held_back


def test_followers_skip_nothing_however_the_writes_interleave(
    database_url: str, settings: Settings
) -> None:
    writers, saves = 8, 120
    app = application_with(settings, JitteryRecorder)
    received: list[Notification] = []
    subscription = subscribe(app.recorder, None)

    def write(writer: int) -> None:
        for i in range(saves):
            app.save(Tally(f"w{writer}-{i}"))

    follower = collecting(subscription, received)
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    deadline = time.monotonic() + 10
    while len(received) < writers * saves and time.monotonic() < deadline:
        time.sleep(0.05)
    subscription.stop()
    follower.join(5)
    with psycopg.connect(database_url) as conn:
        recorded = [
            row[0]
            for row in conn.execute(
                "SELECT notification_id FROM boxoffice_events ORDER BY notification_id"
            )
        ]
    app.close()

    ids = [n.id for n in received]
    assert len(recorded) == writers * saves
    assert ids == recorded


def test_a_follower_of_other_topics_moves_past_the_events_it_does_not_follow(
    settings: Settings,
) -> None:
    app = build_application(settings)
    recorder = app.recorder
    assert isinstance(recorder, TransactionOrderedRecorder)
    for key in ("a", "b", "c"):
        app.save(Tally(key))
    head = recorder.max_notification_id()

    # Nothing of its topic, so next time it reads from the head, not from the start.
    other = recorder.follow(0, 10, topics=["no.such:Topic"])
    # A batch that fills its limit covers the log only up to its last event.
    first = recorder.follow(0, 2)
    app.close()

    assert (other.notifications, other.seen) == ([], head)
    assert len(first.notifications) == 2
    assert first.seen == first.notifications[-1].id < (head or 0)


def test_a_follower_sleeps_through_events_it_does_not_follow(database_url: str) -> None:
    app, recorder, pulls = counting_pulls(database_url)
    tally = Tally("t")
    app.save(tally)
    received: list[Notification] = []
    bumped = get_topic(cast(Any, Tally).TallyBumped)
    # No catch-up pull during the test: only notifications wake it.
    subscription = LogSubscription(recorder, recorder.max_notification_id(), [bumped], 60)
    follower = collecting(subscription, received)
    pulls_before = settled(pulls)
    deadline = time.monotonic() + 5
    for key in ("a", "b", "c"):
        app.save(Tally(key))  # TallyOpened only: not followed
    time.sleep(0.5)
    pulls_after_others = len(pulls)
    tally.bump()
    app.save(tally)
    while not received and time.monotonic() < deadline + 5:
        time.sleep(0.01)
    subscription.stop()
    follower.join(5)
    app.close()

    assert pulls_after_others == pulls_before
    assert [n.topic for n in received] == [bumped]


def test_a_notification_names_the_topics_written_or_wakes_everyone() -> None:
    assert wakes(wake_payload(["a:B", "c:D"]), {"c:D"})
    assert not wakes(wake_payload(["a:B"]), {"c:D"})
    assert wakes(wake_payload(["a:B"]), set())
    too_many = [f"module{i}:Event" for i in range(1000)]
    assert wake_payload(too_many) == ""
    assert wakes(wake_payload(too_many), {"c:D"})


def test_a_notification_names_the_aggregates_written_when_they_fit() -> None:
    mine, other = str(uuid4()), str(uuid4())
    payload = wake_payload(["c:D"], [other])
    assert wakes(payload, {"c:D"}, lambda originator: originator == other)
    assert not wakes(payload, {"c:D"}, lambda originator: originator == mine)
    assert not wakes(wake_payload(["a:B"], [mine]), {"c:D"}, lambda originator: True)
    # Too many to name: the topics alone, which wake a follower of some aggregates.
    crowd = [str(uuid4()) for _ in range(300)]
    assert wake_payload(["c:D"], crowd) == "c:D"
    assert wakes(wake_payload(["c:D"], crowd), {"c:D"}, lambda originator: False)


def test_a_follower_of_some_aggregates_sleeps_through_writes_to_others(
    database_url: str,
) -> None:
    app, recorder, pulls = counting_pulls(database_url)
    watched = Tally("watched")
    app.save(watched)
    received: list[Notification] = []
    # No catch-up pull during the test: only notifications wake it.
    subscription = LogSubscription(
        recorder, recorder.max_notification_id(), [], 60, concerns=lambda o: o == str(watched.id)
    )
    follower = collecting(subscription, received)
    pulls_before = settled(pulls)
    deadline = time.monotonic() + 5
    for key in ("a", "b", "c"):
        app.save(Tally(key))
    time.sleep(0.5)
    pulls_after_others = len(pulls)
    watched.bump()
    app.save(watched)
    while len(received) < 4 and time.monotonic() < deadline + 5:
        time.sleep(0.01)
    subscription.stop()
    follower.join(5)
    app.close()

    assert pulls_after_others == pulls_before
    # Woken by the watched aggregate's write, the pull returns everything since.
    assert [n.originator_id for n in received][-1] == watched.id
    assert len(received) == 4


def test_migrate_refuses_a_log_whose_ids_are_ahead_of_the_clusters_transactions(
    database_url: str, settings: Settings
) -> None:
    # As after a logical restore into a new cluster: ids far above its transaction ids.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO boxoffice_events "
            "(originator_id, originator_version, topic, state, notification_id) "
            "VALUES (%s, 1, 'restored:Event', '{}', %s)",
            (uuid4(), 2**62),
        )

    with pytest.raises(LogAheadOfTransactionIdsError, match="logical dump"):
        migrate(settings)


def test_a_save_of_sixty_thousand_events_completes(settings: Settings) -> None:
    app = build_application(settings)
    originator = uuid4()
    events = [
        StoredEvent(originator, version, "big:Event", b'{"text": "' + b"x" * 200 + b'"}')
        for version in range(1, 60_001)
    ]
    saved: list[Any] = []
    # In pipeline mode this save used to stall for good: bounded here, not by the CI.
    writer = threading.Thread(target=lambda: saved.append(app.recorder.insert_events(events)))
    writer.start()
    writer.join(60)
    recorded = len(app.recorder.select_events(originator)) if not writer.is_alive() else 0
    app.close()

    assert not writer.is_alive()
    assert len(saved[0]) == 60_000
    assert recorded == 60_000


def test_a_web_process_reads_the_log_for_the_commands_its_requests_wait_on(
    database_url: str,
) -> None:
    app, recorder, pulls = counting_pulls(database_url)
    pipeline = CommandPipeline(app, build_catalog(), RetryPolicy())

    def accept(show: str) -> Command:
        return create_show(pipeline, show).command

    def status_of(command_id: UUID) -> str | None:
        command = pipeline.get_command(command_id)
        return None if command is None else command.status

    awaited = accept("awaited")
    # No catch-up pull during the test: only notifications wake the watcher.
    watcher = CommandWatcher(
        app, lambda gt, topics, concerns=None: LogSubscription(recorder, gt, topics, 60, concerns)
    )
    outcome: list[bool] = []

    def wait_for_success() -> None:
        outcome.append(watcher.wait(awaited.id, 10, lambda: status_of(awaited.id) == "failed"))

    waiting = threading.Thread(target=wait_for_success)
    waiting.start()
    pulls_before = settled(pulls)
    for show in ("a", "b", "c"):
        accept(show)  # commands no request here waits on
    time.sleep(0.5)
    pulls_after_others = len(pulls)
    command = pipeline.get_command(awaited.id)
    assert command is not None
    command.fail(1, {"type": "Refused", "message": "no"})
    app.save(command)
    waiting.join(10)
    watcher.close()
    app.close()

    assert pulls_after_others == pulls_before
    assert outcome == [True]


def test_a_waiter_gets_the_commands_events_and_answers_without_reading_it_again(
    settings: Settings,
) -> None:
    """The synchronous answer's command and consistency token come from the events the
    watcher read, not from two more reads of the store."""
    app = build_application(settings)
    pipeline = CommandPipeline(app, build_catalog(), RetryPolicy())
    accepted = create_show(pipeline, "answered").command
    watcher = CommandWatcher(
        app, lambda gt, topics, concerns=None: subscribe(app.recorder, gt, topics, concerns)
    )
    checks: list[list[Notification]] = []
    answered: list[tuple[Command, int] | None] = []
    holding = pipeline.get_command(accepted.id)
    assert holding is not None

    def decided(seen: list[Notification]) -> bool:
        checks.append(seen)
        answered.append(pipeline.advanced(holding, seen) if seen else None)
        return holding.is_terminal

    waiting = threading.Thread(target=lambda: watcher.wait_for_events(accepted.id, 10, decided))
    waiting.start()
    while not checks:
        time.sleep(0.01)
    command = pipeline.get_command(accepted.id)
    assert command is not None
    command.fail(1, {"type": "Refused", "message": "no"})
    app.save(command)
    waiting.join(10)
    watcher.close()
    position = position_of(app, accepted.id)
    stored = pipeline.get_command(accepted.id)
    app.close()

    assert not waiting.is_alive()
    assert checks[0] == []  # the first check is before any change: it reads
    advanced = answered[-1]
    assert advanced is not None
    assert advanced[0] is holding
    assert holding.status == "failed"
    assert stored is not None
    assert holding.version == stored.version
    assert advanced[1] == position
