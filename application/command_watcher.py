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
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.utils import get_topic

from application.command import Command
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


class CommandWatcher:
    """Blocks callers until a condition on a command holds, re-checked at each change."""

    def __init__(self, app: Application[Any], subscribe: Subscribe) -> None:
        self._app = app
        self._subscribe = subscribe
        self._lock = threading.Lock()
        self._waiting: dict[UUID, list[threading.Event]] = {}
        self._thread: threading.Thread | None = None
        self._subscription: Subscription | None = None

    def wait(self, command_id: UUID, timeout: float, condition: Callable[[], bool]) -> bool:
        """Wait up to ``timeout`` s until ``condition()`` holds; returns whether it did.

        ``condition`` is checked once the waiter is registered and after every later
        change to the command, so no change between the check and the wait is missed
        (the command must be accepted by then: its acceptance wakes no one).
        """
        self._ensure_following()
        changed = threading.Event()
        deadline = time.monotonic() + timeout
        with self._lock:
            self._waiting.setdefault(command_id, []).append(changed)
        try:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not changed.wait(remaining):
                    return condition()
                changed.clear()
            return True
        finally:
            with self._lock:
                waiters = self._waiting.get(command_id, [])
                if changed in waiters:
                    waiters.remove(changed)
                if not waiters:
                    self._waiting.pop(command_id, None)

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
                    for changed in waiters:
                        changed.set()
        except Exception:
            # The next wait() starts a new subscription.
            logger.exception("command subscription ended")
