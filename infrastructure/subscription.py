"""Following the event log without ever stalling, one reader per process.

eventsourcing's LISTEN/NOTIFY subscriptions pull new events only when a notification
arrives. A notification sent before the subscription's LISTEN is in place, or lost on
the way, leaves events unread until the next write, which on a quiet system may never
come (pyeventsourcing/eventsourcing#305). :class:`LogSubscription` pulls when notified
and at least every ``interval`` seconds.

A process follows the log once, whatever number of followers it runs (the projector's
views and their segments, the relay and its safety net, the saga runner's segments, a
web process's command watcher): :func:`subscribe` hands out subscriptions of the
process's :class:`SharedLog`, which listens on one connection (:class:`Listening`, which
a web process's view-progress listener shares too) and, when a subscription needs
events, reads once for every subscription at or past its position, for the topics of
them all. A follower far behind reads on its own, and one whose events pile up unread
is left out of the others' reads until it catches up.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Self

from eventsourcing.persistence import ApplicationRecorder, Notification
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.sql import SQL, Identifier

from infrastructure.log_recorder import TransactionOrderedRecorder, wakes

# How long a follower may miss a notification before it pulls anyway.
CATCH_UP_INTERVAL = 1.0
# The in-memory store sends no notifications: polling it often costs nothing.
IN_MEMORY_INTERVAL = 0.02
BATCH = 500
logger = logging.getLogger(__name__)
# A subscription with this many notifications unread is left out of the others' reads.
PENDING_CAP = 2 * BATCH
# How soon to look again when committed events wait behind a transaction still in
# flight (see infrastructure/log_recorder.py): doubled up to HELD_BACK_MAX while held.
HELD_BACK_FIRST = 0.001
HELD_BACK_MAX = 0.05


class LogSubscription(Iterator[Notification]):
    """The notifications after ``gt`` (of ``topics`` only, if given), in log order.

    Iterating blocks until one is recorded, and ends when :meth:`stop` is called. Given
    ``concerns``, a notification wakes the subscription only when it names an aggregate
    whose id ``concerns`` holds true for (or names none); it still pulls every
    ``interval``, and a pull returns every event of its topics. An error of the
    listening connection (the database went away) is raised by the iteration, so that
    the follower resumes from its tracked position. Given ``shared``, it is one of that
    :class:`SharedLog`'s, which listens and reads for it; otherwise it reads on its
    own, woken (on PostgreSQL) by the process's :class:`Listening`.
    """

    def __init__(
        self,
        recorder: ApplicationRecorder,
        gt: int | None,
        topics: Sequence[str] = (),
        interval: float | None = None,
        concerns: Callable[[str], bool] | None = None,
        shared: SharedLog | None = None,
    ) -> None:
        self._recorder = recorder
        self._shared = shared
        self._concerns = concerns
        self._last = gt or 0
        self._topics = list(topics)
        self._wanted = frozenset(topics)
        self._pending: deque[Notification] = deque()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._listening: Listening.Registration | None = None
        self._held_back = False
        self._held_back_wait = HELD_BACK_FIRST
        # The last read reached the head, and no notification came since.
        self._caught_up = False
        self._notified = False
        # Which of its shared log's reads last included it (see SharedLog.pull).
        self.covered = 0
        if isinstance(recorder, PostgresApplicationRecorder):
            self._interval = CATCH_UP_INTERVAL if interval is None else interval
            if shared is None:
                self._listening = listening(recorder.datastore).add(
                    recorder.channel_name, self.wake, self.fail
                )
        else:
            self._interval = IN_MEMORY_INTERVAL if interval is None else interval

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        """End the iteration (from any thread)."""
        self._stopped.set()
        self._wake.set()
        if self._shared is not None:
            self._shared.leave(self)
        if self._listening is not None:
            self._listening.remove()

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Notification:
        while True:
            if self._error is not None:
                raise self._error
            if self._stopped.is_set():
                raise StopIteration
            if self._pending:
                return self._pending.popleft()
            if self._caught_up and not self._notified:
                # The last read reached the head: nothing more until a notification
                # (or the interval), rather than a read that would find nothing.
                self._caught_up = False
                self._wake.clear()
                if not self._notified and not self._pending:
                    self._wake.wait(self._interval)
                continue
            # Cleared before the pull: a notification during the pull wakes the next wait.
            self._notified = False
            self._wake.clear()
            self._pull()
            if self._pending:
                self._held_back_wait = HELD_BACK_FIRST
            elif self._held_back:
                # The writer ahead will notify when it commits; a transaction that
                # writes no events will not, hence the short look again.
                self._wake.wait(self._held_back_wait)
                self._held_back_wait = min(self._held_back_wait * 2, HELD_BACK_MAX)
            else:
                self._wake.wait(self._interval)

    def _pull(self) -> None:
        if self._shared is not None:
            self._shared.pull(self)
        elif isinstance(self._recorder, TransactionOrderedRecorder):
            followed = self._recorder.follow(self._last, BATCH, self._topics)
            self.take(followed.notifications, followed.seen, followed.held_back)
        else:
            batch = self._recorder.select_notifications(
                start=self._last, limit=BATCH, topics=self._topics, inclusive_of_start=False
            )
            self.take(batch, batch[-1].id if batch else self._last, False)

    def take(self, notifications: Sequence[Notification], seen: int, held_back: bool) -> None:
        """Queue those of ``notifications`` past this subscription's position and of its
        topics, from a read that covered the log up to ``seen``."""
        last = self._last
        new = [
            n
            for n in notifications
            if n.id > last and (not self._wanted or n.topic in self._wanted)
        ]
        self._pending.extend(new)
        self._last = max(last, seen)
        self._held_back = held_back and not new
        self._caught_up = len(notifications) < BATCH and not held_back
        if new:
            self._wake.set()

    def wake(self, payload: str) -> None:
        """Wake the iteration if a notification with ``payload`` concerns it."""
        if wakes(payload, self._wanted, self._concerns):
            self._notified = True
            self._wake.set()

    def fail(self, error: BaseException) -> None:
        """Raise ``error`` from the iteration (the listening connection failed)."""
        self._error = error
        self._wake.set()

    @property
    def position(self) -> int:
        """How far the reads for this subscription have covered the log."""
        return self._last

    @property
    def topics(self) -> list[str]:
        """The topics followed (none: all)."""
        return self._topics

    @property
    def hungry(self) -> bool:
        """Whether it takes part in a read: not stopped, and not too much left unread."""
        return not self._stopped.is_set() and len(self._pending) < PENDING_CAP

    def next_batch(self, limit: int) -> list[Notification]:
        """The next notification (waiting for it as iterating does) and those already
        pulled after it, up to ``limit`` in all."""
        batch = [next(self)]
        while self._pending and len(batch) < limit:
            batch.append(self._pending.popleft())
        return batch


class SharedLog:
    """One process's reader of the log (see the module): the subscriptions it hands out
    are woken by one listening connection and fed by reads made for all of them."""

    def __init__(self, recorder: TransactionOrderedRecorder) -> None:
        self._recorder = recorder
        self._subscriptions: set[LogSubscription] = set()
        self._lock = threading.Lock()
        # One read at a time: a subscription that waited for it may find itself fed.
        self._reading = threading.Lock()
        # Reads begun so far; a subscription's ``covered`` is the last that included it.
        self._reads = 0
        self._listening: Listening.Registration | None = None

    def subscribe(
        self,
        gt: int | None,
        topics: Sequence[str] = (),
        concerns: Callable[[str], bool] | None = None,
    ) -> LogSubscription:
        """A subscription after position ``gt``, as :class:`LogSubscription`."""
        subscription = LogSubscription(self._recorder, gt, topics, concerns=concerns, shared=self)
        with self._lock:
            self._subscriptions.add(subscription)
            if self._listening is None or not self._listening.active:
                self._listening = listening(self._recorder.datastore).add(
                    self._recorder.channel_name, self._woken, self._failed
                )
        return subscription

    def leave(self, subscription: LogSubscription) -> None:
        """Stop feeding ``subscription``; stop listening once none is left."""
        with self._lock:
            self._subscriptions.discard(subscription)
            if not self._subscriptions and self._listening is not None:
                self._listening.remove()
                self._listening = None

    def pull(self, requester: LogSubscription) -> None:
        """Read the log after ``requester``'s position, for it and every subscription
        at or past that position with room for more."""
        asked = self._reads
        with self._reading:
            if not requester.hungry or requester._pending or requester.covered > asked:
                return  # a read made since it asked covered it
            self._reads += 1
            start = requester.position
            with self._lock:
                group = [s for s in self._subscriptions if s.position >= start and s.hungry]
            if requester not in group:
                group.append(requester)
            topics: list[str] = []
            if all(s.topics for s in group):
                topics = sorted({t for s in group for t in s.topics})
            followed = self._recorder.follow(start, BATCH, topics)
            for subscription in group:
                subscription.covered = self._reads
                subscription.take(followed.notifications, followed.seen, followed.held_back)

    def _woken(self, payload: str) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.wake(payload)

    def _failed(self, error: BaseException) -> None:
        # Each follower resumes from its own position with a new subscription, which
        # listens again.
        with self._lock:
            subscriptions = list(self._subscriptions)
            self._subscriptions.clear()
            self._listening = None
        for subscription in subscriptions:
            subscription.fail(error)


class Listening:
    """One LISTEN connection of a process to a database, for every channel the process
    listens on (the log's, the views' progress), taken from ``datastore``'s pool while
    anything listens.

    An error of the connection (the database went away) is handed to every
    registration's ``failed``, which ends them all; the next :meth:`add` listens again.
    """

    class Registration:
        """What :meth:`Listening.add` returns: :meth:`remove` it to stop hearing."""

        def __init__(self, owner: Listening, channel: str, heard: Callable[[str], None]) -> None:
            self._owner = owner
            self.channel = channel
            self.heard = heard
            self.failed: Callable[[BaseException], None] = lambda error: None
            self.active = True

        def remove(self) -> None:
            """Hear nothing more."""
            self._owner._remove(self)

    def __init__(self, datastore: PostgresDatastore) -> None:
        self._datastore = datastore
        self._lock = threading.Lock()
        self._registrations: list[Listening.Registration] = []
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def add(
        self,
        channel: str,
        heard: Callable[[str], None],
        failed: Callable[[BaseException], None] = lambda error: None,
    ) -> Listening.Registration:
        """Hand each payload notified on ``channel`` to ``heard`` (and an error of the
        connection to ``failed``), from the listening thread."""
        registration = Listening.Registration(self, channel, heard)
        registration.failed = failed
        with self._lock:
            self._registrations.append(registration)
            if self._thread is None or not self._thread.is_alive():
                self._stopped = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stopped,), name="listener", daemon=True
                )
                self._thread.start()
        return registration

    def _remove(self, registration: Listening.Registration) -> None:
        with self._lock:
            registration.active = False
            if registration in self._registrations:
                self._registrations.remove(registration)
            if not self._registrations:
                self._stopped.set()
                self._thread = None

    def _run(self, stopped: threading.Event) -> None:
        listened: set[str] = set()
        try:
            with self._datastore.get_connection() as conn:
                while not stopped.is_set():
                    with self._lock:
                        registrations = list(self._registrations)
                    for channel in {r.channel for r in registrations} - listened:
                        conn.execute(SQL("LISTEN {0}").format(Identifier(channel)))
                        listened.add(channel)
                    # A short timeout, so that a stop or a new channel is noticed soon.
                    for notify in conn.notifies(timeout=0.1, stop_after=1):
                        with self._lock:
                            hearing = [
                                r for r in self._registrations if r.channel == notify.channel
                            ]
                        for registration in hearing:
                            registration.heard(notify.payload)
                # Back to the pool, where nothing should go on receiving notifications.
                conn.execute("UNLISTEN *")
        except BaseException as error:  # noqa: BLE001 - handed to every registration
            with self._lock:
                if stopped.is_set():
                    return  # no longer the listening thread: those registered are not its
                failing = list(self._registrations)
                self._registrations.clear()
                self._thread = None
            for registration in failing:
                registration.active = False
                try:
                    registration.failed(error)
                except Exception:
                    logger.warning("a listener's failure handler failed", exc_info=True)


_listenings: weakref.WeakKeyDictionary[PostgresDatastore, Listening] = weakref.WeakKeyDictionary()
_shared_logs: weakref.WeakKeyDictionary[ApplicationRecorder, SharedLog] = (
    weakref.WeakKeyDictionary()
)
_made = threading.Lock()


def listening(datastore: PostgresDatastore) -> Listening:
    """The process's one :class:`Listening` to ``datastore``'s database."""
    with _made:
        found = _listenings.get(datastore)
        if found is None:
            found = _listenings[datastore] = Listening(datastore)
        return found


def subscribe(
    recorder: Any,
    gt: int | None,
    topics: Sequence[str] = (),
    concerns: Callable[[str], bool] | None = None,
) -> LogSubscription:
    """A subscription to ``recorder`` after position ``gt``: of the process's
    :class:`SharedLog` on PostgreSQL, a polling one of its own elsewhere."""
    if not isinstance(recorder, TransactionOrderedRecorder):
        return LogSubscription(recorder, gt, topics, concerns=concerns)
    with _made:
        shared = _shared_logs.get(recorder)
        if shared is None:
            shared = _shared_logs[recorder] = SharedLog(recorder)
    return shared.subscribe(gt, topics, concerns)
