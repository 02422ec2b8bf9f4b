"""Lets request threads wait for command outcomes, pushed by the event log.

One subscription per process follows the log (LISTEN/NOTIFY on PostgreSQL) and wakes
the threads waiting for the commands whose outcome it sees. Works with any number of
web processes, since each follows the shared log itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.utils import get_topic

from application.command import Command
from application.subscriptions import subscribe

logger = logging.getLogger(__name__)

OUTCOMES = (Command.CommandSucceeded, Command.CommandFailed, Command.CommandDeadLettered)


class OutcomeWaiter:
    """Blocks callers until a command's outcome is recorded, or a timeout passes."""

    def __init__(self, app: Application[Any]) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._waiting: dict[UUID, list[threading.Event]] = {}
        self._thread: threading.Thread | None = None
        self._subscription: Any = None

    def wait(self, command_id: UUID, timeout: float, is_decided: Callable[[], bool]) -> bool:
        """Wait up to ``timeout`` s for ``command_id``'s outcome; True once it is known.

        ``is_decided`` is checked after the waiter is registered, so an outcome recorded
        before the call is not missed.
        """
        self._ensure_following()
        woken = threading.Event()
        with self._lock:
            self._waiting.setdefault(command_id, []).append(woken)
        try:
            return is_decided() or woken.wait(timeout)
        finally:
            with self._lock:
                waiters = self._waiting.get(command_id, [])
                if woken in waiters:
                    waiters.remove(woken)
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
            # outcome after it reaches the subscription.
            subscription = subscribe(
                self._app.recorder,
                gt=self._app.recorder.max_notification_id(),
                topics=[get_topic(cls) for cls in OUTCOMES],
            )
            self._subscription = subscription
            self._thread = threading.Thread(
                target=self._follow, args=(subscription,), name="outcome-waiter", daemon=True
            )
            self._thread.start()

    def _follow(self, subscription: Any) -> None:
        try:
            with subscription:
                for notification in subscription:
                    with self._lock:
                        waiters = list(self._waiting.get(notification.originator_id, []))
                    for woken in waiters:
                        woken.set()
        except Exception:
            # The next wait() starts a new subscription.
            logger.exception("outcome subscription ended")
