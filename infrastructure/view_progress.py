"""Waiting for a view to advance without polling it.

A view's writer (the projector) notifies ``VIEW_PROGRESS_CHANNEL`` after each
transaction that moves the view's position, with the view's table as payload (best
effort: a reader also looks again every 0.2 s). A process that waits on
views (the web, for ``Consistency-Token`` reads) listens on one connection and counts
each view's commits, so a waiting request looks again as soon as its view has moved.
"""

from __future__ import annotations

import logging
import threading

from eventsourcing.postgres import PostgresDatastore

from infrastructure.subscription import Listening, listening
from projections.document_view import VIEW_PROGRESS_CHANNEL

logger = logging.getLogger(__name__)


class ViewProgressListener:
    """Counts each view's commits as PostgreSQL notifies them (LISTEN, on the process's
    one listening connection to ``datastore``'s database, from the first use).

    Implements :class:`projections.read_models.ViewProgress`. When the connection fails
    (the database restarted), the next use listens again; a commit notified in between
    is missed, which costs a waiting reader the wait's fallback pause, never a result.
    """

    def __init__(self, datastore: PostgresDatastore) -> None:
        self._datastore = datastore
        self._changed = threading.Condition()
        self._generations: dict[str, int] = {}
        self._registration: Listening.Registration | None = None

    def generation(self, view: str) -> int:
        """How many commits of ``view`` this process has been told of."""
        self._ensure_listening()
        with self._changed:
            return self._generations.get(view, 0)

    def wait_past(self, view: str, generation: int, timeout: float) -> None:
        """Wait up to ``timeout`` s for a commit of ``view`` after ``generation``."""
        with self._changed:
            self._changed.wait_for(lambda: self._generations.get(view, 0) != generation, timeout)

    def close(self) -> None:
        """Stop listening (from any thread)."""
        with self._changed:
            registration, self._registration = self._registration, None
        if registration is not None:
            registration.remove()

    def _ensure_listening(self) -> None:
        with self._changed:
            if self._registration is not None and self._registration.active:
                return
            # On the process's one listening connection (the log's too).
            self._registration = listening(self._datastore).add(
                VIEW_PROGRESS_CHANNEL, self._moved, self._lost
            )

    def _lost(self, error: BaseException) -> None:
        logger.warning("view progress: listening stopped: %s", error)

    def _moved(self, view: str) -> None:
        with self._changed:
            self._generations[view] = self._generations.get(view, 0) + 1
            self._changed.notify_all()
