"""Lets request threads wait for changes to commands, pushed by the event log.

One subscription per process follows the Command events in the log (LISTEN/NOTIFY on
PostgreSQL) and wakes the threads waiting on the commands it sees change. Works with
any number of web processes, since each follows the shared log itself. A notification
names the aggregates written, so a process reads the log when a command one of its
requests waits on changed (and at the subscription's catch-up interval), not at every
write of every process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic

from application.command import Command
from application.pipeline import CommandPipeline
from application.ports import Subscribe, Subscription

logger = logging.getLogger(__name__)

# The changes a waiter waits for. Not the acceptance: a waiter registers after it, so a
# write of nothing but acceptances (every accept) need not wake a web process.
COMMAND_EVENTS = (
    Command.CommandStarted,
    Command.CommandSucceeded,
    Command.CommandFailed,
    Command.CommandRetryScheduled,
    Command.CommandDeadLettered,
    Command.CommandRedriven,
)


@dataclass
class Watched:
    """A command as a wait left it, and the log position of its last event when the
    watcher's events brought it there (None when it was read from the store)."""

    command: Command
    position: int | None = None


@dataclass(eq=False)
class _Waiter:
    changed: threading.Event = field(default_factory=threading.Event)
    # The command's events the watcher read since the waiter last looked (under the lock).
    seen: list[Notification] = field(default_factory=list)


class CommandWatcher:
    """Blocks callers until a condition on a command holds, re-checked at each change."""

    def __init__(self, app: Application[Any], subscribe: Subscribe) -> None:
        self._app = app
        self._subscribe = subscribe
        self._lock = threading.Lock()
        self._waiting: dict[UUID, list[_Waiter]] = {}
        self._thread: threading.Thread | None = None
        self._subscription: Subscription | None = None

    def wait(self, command_id: UUID, timeout: float, condition: Callable[[], bool]) -> bool:
        """Wait up to ``timeout`` s until ``condition()`` holds; returns whether it did.

        ``condition`` is checked once the waiter is registered and after every later
        change to the command, so no change between the check and the wait is missed
        (the command must be accepted by then: its acceptance wakes no one).
        """
        return self.wait_for_events(command_id, timeout, lambda _: condition())

    def wait_for_events(
        self,
        command_id: UUID,
        timeout: float,
        condition: Callable[[list[Notification]], bool],
    ) -> bool:
        """:meth:`wait`, with ``condition`` given the command's events (with their
        positions) that the watcher read since the waiter registered or last looked,
        in log order: a waiter can apply them to the command it holds instead of
        reading it again. The first check usually gets none (an outcome before the
        registration reaches no waiter, so it must read); acceptances are never among
        them."""
        self._ensure_following()
        waiter = _Waiter()
        deadline = time.monotonic() + timeout
        with self._lock:
            self._waiting.setdefault(command_id, []).append(waiter)
        try:
            while not condition(self._take(waiter)):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not waiter.changed.wait(remaining):
                    return condition(self._take(waiter))
                waiter.changed.clear()
            return True
        finally:
            with self._lock:
                waiters = self._waiting.get(command_id, [])
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    self._waiting.pop(command_id, None)

    def await_outcome(self, pipeline: CommandPipeline, command: Command, timeout: float) -> Watched:
        """Wait up to ``timeout`` s for ``command`` to reach a terminal status (what
        ``Prefer: wait`` does): the events the watcher reads carry it on without a read
        of its own; a gap, or no events, and it is read again. The wait ends with a
        check, so a command that ended just before it is seen ended."""
        watched = Watched(command)

        def decided(seen: list[Notification]) -> bool:
            advanced = pipeline.advanced(watched.command, seen)
            if advanced is None:
                found = pipeline.get_command(command.id)
                if found is not None:
                    watched.command = found
                watched.position = None
            else:
                watched.command, watched.position = advanced
            return watched.command.is_terminal

        self.wait_for_events(command.id, timeout, decided)
        return watched

    def _take(self, waiter: _Waiter) -> list[Notification]:
        with self._lock:
            seen, waiter.seen = waiter.seen, []
        return seen

    def close(self) -> None:
        """Stop following the log."""
        with self._lock:
            subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.stop()

    def _ensure_following(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            # The start position is read here, before any caller registers, so every
            # change after it reaches the subscription.
            subscription = self._subscribe(
                self._app.recorder.max_notification_id(),
                [get_topic(cls) for cls in COMMAND_EVENTS],
                self._awaited,
            )
            self._subscription = subscription
            self._thread = threading.Thread(
                target=self._follow, args=(subscription,), name="command-watcher", daemon=True
            )
            self._thread.start()

    def _awaited(self, originator_id: str) -> bool:
        # Called by the subscription for each aggregate a write names: a process whose
        # requests wait on no command it names does not read the log for it.
        try:
            key = UUID(originator_id)
        except ValueError:
            return True
        with self._lock:
            return key in self._waiting

    def _follow(self, subscription: Subscription) -> None:
        try:
            with subscription:
                for notification in subscription:
                    with self._lock:
                        key = UUID(str(notification.originator_id))
                        waiters = list(self._waiting.get(key, []))
                        for waiter in waiters:
                            waiter.seen.append(notification)
                    for waiter in waiters:
                        waiter.changed.set()
        except Exception:
            # The next wait() starts a new subscription.
            logger.exception("command subscription ended")
