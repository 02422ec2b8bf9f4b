"""Following the event log: the projector, and the loop the relay and sagas share.

Each follower runs from its own tracked position. An error (the database restarting,
the broker gone) is logged and the follower resumes from its tracked position after a
pause that grows while the error persists: the effect and the position are written
together, or the effect is idempotent, so nothing is applied twice or skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from eventsourcing.application import Application
from eventsourcing.persistence import Tracking

from application.subscriptions import subscribe

logger = logging.getLogger(__name__)


class Follower(Protocol):
    """Something that processes events of some topics, tracking its position in ``view``."""

    name: str

    @property
    def view(self) -> Any: ...

    def event_topics(self) -> tuple[str, ...]: ...

    def process_event(self, domain_event: Any, tracking: Tracking) -> None: ...


class Projector:
    """Runs projections over one application's event log until stopped."""

    def __init__(self, app: Application[Any], projections: Sequence[Follower]) -> None:
        self.app = app
        self.projections = projections

    def run(self, stop: threading.Event, retry_after: float = 1.0) -> None:
        """Project until ``stop`` is set."""
        threads = [
            threading.Thread(
                target=follow_until_stopped,
                args=(self.app, projection, stop, retry_after),
                name=f"projection-{projection.name}",
            )
            for projection in self.projections
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def follow_until_stopped(
    app: Application[Any],
    follower: Follower,
    stop: threading.Event,
    retry_after: float = 1.0,
    max_retry_after: float = 30.0,
) -> None:
    """:func:`follow`, resumed from the tracked position after any error, until ``stop``.

    The pause doubles from ``retry_after`` up to ``max_retry_after`` while the error
    persists, and starts again from ``retry_after`` once following lasted longer than
    the longest pause (the dependency came back).
    """
    pause = retry_after
    while not stop.is_set():
        started = time.monotonic()
        try:
            follow(app, follower, stop)
        except Exception as error:  # every failure is retried, and logged
            if time.monotonic() - started > max_retry_after:
                pause = retry_after
            logger.warning(
                "%s stopped: %s; resuming from its tracked position in %.1f s",
                follower.name,
                error,
                pause,
                # The first failure of a streak with its traceback, the rest in one line.
                exc_info=pause == retry_after,
            )
            stop.wait(pause)
            pause = min(pause * 2, max_retry_after)


def follow(app: Application[Any], follower: Follower, stop: threading.Event) -> None:
    """Hand ``follower`` every event of its topics after its position until ``stop`` is set."""
    gt = follower.view.max_tracking_id(app.name)
    logger.info("%s following from %s", follower.name, gt or 0)
    with subscribe(app.recorder, gt, follower.event_topics()) as subscription:

        def stop_when_asked() -> None:
            stop.wait()
            subscription.stop()

        threading.Thread(target=stop_when_asked, daemon=True).start()
        for notification in subscription:
            event = app.mapper.to_domain_event(notification)
            follower.process_event(event, Tracking(app.name, notification.id))
