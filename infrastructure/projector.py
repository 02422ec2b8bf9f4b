"""The projector: every projection follows the log in a thread of its own."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.application import Application

from infrastructure.following import Follower, follow_until_stopped
from infrastructure.stall_log import StallLog


class Projector:
    """Runs projections over one application's event log until stopped."""

    def __init__(
        self,
        app: Application[Any],
        projections: Sequence[Follower],
        stalls: StallLog | None = None,
        loops: Sequence[Callable[[threading.Event], None]] = (),
    ) -> None:
        self.app = app
        self.projections = projections
        self.stalls = stalls
        self.loops = loops

    def run(self, stop: threading.Event, retry_after: float = 1.0) -> None:
        """Project until ``stop`` is set."""
        threads = [
            threading.Thread(
                target=follow_until_stopped,
                args=(self.app, projection, stop, retry_after),
                kwargs={"stalls": self.stalls},
                name=f"projection-{projection.name}",
            )
            for projection in self.projections
        ]
        threads += [threading.Thread(target=loop, args=(stop,)) for loop in self.loops]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
