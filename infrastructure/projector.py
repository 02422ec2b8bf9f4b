"""The projector: follows the event log and keeps every read model up to date.

Each projection runs in its own thread from its own tracked position. An error (the
database restarting, say) is logged and the projection resumes from its tracked
position after a pause: the row and the position are written together, so nothing is
applied twice or skipped.
"""

from __future__ import annotations

import logging
import threading
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
                target=self._follow_with_retries,
                args=(projection, stop, retry_after),
                name=f"projection-{projection.name}",
            )
            for projection in self.projections
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _follow_with_retries(
        self, projection: Follower, stop: threading.Event, retry_after: float
    ) -> None:
        while not stop.is_set():
            try:
                follow(self.app, projection, stop)
            except Exception:
                logger.exception("projection %s failed; resuming", projection.name)
                stop.wait(retry_after)


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
