"""The projector: every projection follows the log in a thread of its own.

Given ``lease_for``, each projection runs under its own lease (``projection:<name>``):
of several projector processes, one applies a view while the others stand by; with
``shares``, each process takes at most its share of the views, so that they spread
over the processes, and are given up to a process that joins.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.application import Application

from infrastructure.following import Follower, follow_until_stopped
from infrastructure.lease import Lease
from infrastructure.leased_work import Guarded, LeaseFence, Shares, run_leased, run_together
from infrastructure.stall_log import StallLog


class Projector:
    """Runs projections over one application's event log until stopped."""

    def __init__(
        self,
        app: Application[Any],
        projections: Sequence[Follower],
        stalls: StallLog | None = None,
        loops: Sequence[Callable[[threading.Event], None]] = (),
        lease_for: Callable[[str], Lease] | None = None,
        shares: Shares | None = None,
    ) -> None:
        self.app = app
        self.projections = projections
        self.stalls = stalls
        self.loops = loops
        self.lease_for = lease_for
        self.shares = shares

    def run(self, stop: threading.Event, retry_after: float = 1.0) -> None:
        """Project until ``stop`` is set; raises
        :class:`~infrastructure.leased_work.PartFailedError` if a projection's thread failed."""
        jobs: list[tuple[str, Callable[[], None]]] = [
            (
                f"projection-{projection.name}",
                functools.partial(self._follow, projection, stop, retry_after),
            )
            for projection in self.projections
        ]
        jobs += [(f"loop-{i}", functools.partial(loop, stop)) for i, loop in enumerate(self.loops)]
        if self.shares is not None:
            jobs.append(("shares", functools.partial(self.shares.run, stop)))
        run_together(jobs, stop)

    def _follow(self, projection: Follower, stop: threading.Event, retry_after: float) -> None:
        if self.lease_for is None:
            follow_until_stopped(self.app, projection, stop, retry_after, stalls=self.stalls)
            return
        lease = self.lease_for(f"projection:{projection.name}")

        def work(term: threading.Event) -> None:
            projection.view.fence = LeaseFence(lease)
            guarded = Guarded(projection, lease)
            follow_until_stopped(self.app, guarded, term, retry_after, stalls=self.stalls)

        run_leased(lease, work, stop, self.shares)
