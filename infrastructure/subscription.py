"""Following the event log without ever stalling.

eventsourcing's LISTEN/NOTIFY subscriptions pull new events only when a notification
arrives. A notification sent before the subscription's LISTEN is in place, or lost on
the way, leaves events unread until the next write, which on a quiet system may never
come (pyeventsourcing/eventsourcing#305). :class:`LogSubscription` pulls when notified
and at least every ``interval`` seconds, through the recorders' public API only.
"""

from __future__ import annotations

import threading
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
# How soon to look again when committed events wait behind a transaction still in
# flight (see infrastructure/log_recorder.py): doubled up to HELD_BACK_MAX while held.
HELD_BACK_FIRST = 0.001
HELD_BACK_MAX = 0.05


class LogSubscription(Iterator[Notification]):
    """The notifications after ``gt`` (of ``topics`` only, if given), in log order.

    Iterating blocks until one is recorded, and ends when :meth:`stop` is called. Given
    ``concerns``, a notification wakes the subscription only when it names an aggregate
    whose id ``concerns`` holds true for (or names none); it still pulls every
    ``interval``, and a pull returns every event of its topics. An
    error of the listening connection (the database went away) is raised by the
    iteration, so that the follower resumes from its tracked position.
    """

    def __init__(
        self,
        recorder: ApplicationRecorder,
        gt: int | None,
        topics: Sequence[str] = (),
        interval: float | None = None,
        concerns: Callable[[str], bool] | None = None,
    ) -> None:
        self._recorder = recorder
        self._concerns = concerns
        self._last = gt or 0
        self._topics = list(topics)
        self._wanted = frozenset(topics)
        self._pending: deque[Notification] = deque()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._listener: threading.Thread | None = None
        self._held_back_wait = HELD_BACK_FIRST
        if isinstance(recorder, PostgresApplicationRecorder):
            self._interval = CATCH_UP_INTERVAL if interval is None else interval
            self._listener = threading.Thread(
                target=self._listen, args=(recorder,), name="log-listener", daemon=True
            )
            self._listener.start()
        else:
            self._interval = IN_MEMORY_INTERVAL if interval is None else interval

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
        if self._listener is not None and self._listener is not threading.current_thread():
            self._listener.join()

    def stop(self) -> None:
        """End the iteration (from any thread)."""
        self._stopped.set()
        self._wake.set()

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
            # Cleared before the pull: a notification during the pull wakes the next wait.
            self._wake.clear()
            batch, held_back = self._pull()
            if batch:
                self._pending.extend(batch)
                self._held_back_wait = HELD_BACK_FIRST
            elif held_back:
                # The writer ahead will notify when it commits; a transaction that
                # writes no events will not, hence the short look again.
                self._wake.wait(self._held_back_wait)
                self._held_back_wait = min(self._held_back_wait * 2, HELD_BACK_MAX)
            else:
                self._wake.wait(self._interval)

    def _pull(self) -> tuple[Sequence[Notification], bool]:
        if isinstance(self._recorder, TransactionOrderedRecorder):
            followed = self._recorder.follow(self._last, BATCH, self._topics)
            self._last = followed.seen
            return followed.notifications, followed.held_back
        batch = self._recorder.select_notifications(
            start=self._last, limit=BATCH, topics=self._topics, inclusive_of_start=False
        )
        if batch:
            self._last = batch[-1].id
        return batch, False

    def next_batch(self, limit: int) -> list[Notification]:
        """The next notification (waiting for it as iterating does) and those already
        pulled after it, up to ``limit`` in all."""
        batch = [next(self)]
        while self._pending and len(batch) < limit:
            batch.append(self._pending.popleft())
        return batch

    def _listen(self, recorder: PostgresApplicationRecorder) -> None:
        def received(payload: str) -> None:
            if wakes(payload, self._wanted, self._concerns):
                self._wake.set()

        try:
            listen(recorder.datastore, recorder.channel_name, self._stopped, received)
        except BaseException as error:  # noqa: BLE001 - handed to the iterating thread
            self._error = error
            self._wake.set()


def listen(
    datastore: PostgresDatastore,
    channel: str,
    stopped: threading.Event,
    received: Callable[[str], None],
) -> None:
    """Hand ``received`` the payload of each notification on ``channel``, on one
    connection of ``datastore``'s pool, until ``stopped`` is set. The connection's
    errors (the database went away) are raised."""
    with datastore.get_connection() as conn:
        conn.execute(SQL("LISTEN {0}").format(Identifier(channel)))
        while not stopped.is_set():
            # A short timeout so that a stop is noticed soon.
            for notify in conn.notifies(timeout=0.1, stop_after=1):
                received(notify.payload)


def subscribe(
    recorder: Any,
    gt: int | None,
    topics: Sequence[str] = (),
    concerns: Callable[[str], bool] | None = None,
) -> LogSubscription:
    """A :class:`LogSubscription` to ``recorder`` after position ``gt``."""
    return LogSubscription(recorder, gt, topics, concerns=concerns)
