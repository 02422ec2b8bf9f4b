"""The read models of one process, and what every query asks of them: a document, a
page, and whether a view has caught up with a position of the event log."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import Notification, Tracking

from application.queries import Page
from projections.document_projection import DocumentProjection
from projections.document_view import Documents, InMemoryDocumentView

# The longest a reader waiting on a view goes without looking again, whether or not a
# progress notification arrived (one can be missed while the listener reconnects).
PROGRESS_FALLBACK_SECONDS = 0.2


class ViewProgress(Protocol):
    """Tells a process that views moved, so that a reader waits instead of polling."""

    def generation(self, view: str) -> int:
        """A number that changes whenever ``view`` (a view's table) has moved."""
        ...

    def wait_past(self, view: str, generation: int, timeout: float) -> None:
        """Wait up to ``timeout`` s until ``view``'s generation is past ``generation``."""
        ...


class ReadModels:
    """The views by name, over the event log they follow: ``views`` holds the documents
    of each of the ``projections`` named (the composition root says which); ``progress``,
    when given, wakes readers that wait on a view (otherwise they poll)."""

    def __init__(
        self,
        app: Application[Any],
        projections: Sequence[type[DocumentProjection]],
        views: Mapping[str, Documents],
        progress: ViewProgress | None = None,
    ) -> None:
        self.app = app
        self.views = dict(views)
        self.progress = progress
        # Each view's topics, which its position and its lag are counted in.
        self.topics = {p.name: p.event_topics() for p in projections if p.name in self.views}

    @property
    def names(self) -> list[str]:
        """The views' names."""
        return list(self.views)

    def refresh(self) -> None:
        """Bring the views up to date before a read, where this process keeps them."""

    def get(self, name: str, key: UUID) -> dict[str, Any] | None:
        """The document of ``key`` in view ``name``, with its ``position``, or None."""
        self.refresh()
        return self.views[name].get(key)

    def page(self, name: str, filters: dict[str, Any], cursor: str | None, limit: int) -> Page:
        """A page of view ``name``; see :meth:`Documents.page`."""
        self.refresh()
        return self.views[name].page(filters, cursor, limit)

    def recent(self, name: str, filters: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """The documents of view ``name`` inserted last; see :meth:`Documents.recent`."""
        self.refresh()
        return self.views[name].recent(filters, limit)

    def written(self, name: str, keys: Sequence[UUID]) -> dict[UUID, tuple[int, datetime]]:
        """When view ``name``'s documents of ``keys`` were last written; see
        :meth:`Documents.written`."""
        self.refresh()
        return self.views[name].written(keys)

    def counts(self, name: str, column: str) -> dict[str, int]:
        """How many documents of view ``name`` have each value of ``column``."""
        self.refresh()
        return self.views[name].counts(column)

    def position(self, name: str) -> int:
        """The position of the last event view ``name`` applied."""
        self.refresh()
        return self.views[name].view_position(self.app.name) or 0

    def segment_positions(self, name: str) -> dict[str, int | None]:
        """The position of each segment of view ``name``, by label; none if it is whole."""
        return self.views[name].segment_positions(self.app.name)

    def pending(self, name: str, upto: int, limit: int) -> int:
        """How many events up to ``upto`` view ``name`` follows but has not applied.

        A view follows only its own topics, so its position stops at the last event it
        cares about: the events between it and ``upto`` that it follows are its lag.
        """
        return len(self._unapplied(name, self.position(name), upto, limit))

    def count_between(self, name: str, after: int, upto: int, limit: int) -> int:
        """How many events of view ``name``'s topics lie in ``(after, upto]``."""
        if upto <= after:
            return 0
        return len(self._unapplied(name, after, upto, limit))

    def frontier(self, name: str) -> int | None:
        """The position of the first event view ``name`` has yet to apply, None if none."""
        first = self._unapplied(name, self.position(name), None, 1)
        return first[0].id if first else None

    def frontiers(self, names: Sequence[str]) -> dict[str, int | None]:
        """:meth:`frontier` of each view of ``names`` (a store may answer in one query)."""
        return {name: self.frontier(name) for name in names}

    def reached(self, name: str, position: int) -> bool:
        """Whether view ``name`` reflects every event up to ``position``."""
        frontier = self.frontiers([name])[name]
        return frontier is None or frontier > position

    def reached_by_view(self, positions: Iterable[int]) -> list[dict[str, bool]]:
        """For each position, which views reflect it, in a number of queries that does
        not grow with the positions."""
        frontiers = self.frontiers(list(self.views))
        return [
            {name: f is None or f > position for name, f in frontiers.items()}
            for position in positions
        ]

    def await_reached(self, name: str, position: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s for :meth:`reached`; returns whether it was."""
        deadline = time.monotonic() + timeout
        pause = 0.01
        table = str(getattr(self.views[name], "table", name))
        while True:
            # Read before the check: a commit during the check still ends the wait.
            seen = self.progress.generation(table) if self.progress is not None else 0
            if self.reached(name, position):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self.progress is not None:
                self.progress.wait_past(table, seen, min(remaining, PROGRESS_FALLBACK_SECONDS))
            else:
                time.sleep(min(pause, remaining))
                pause = min(pause * 2, PROGRESS_FALLBACK_SECONDS)

    def _unapplied(
        self, name: str, after: int, upto: int | None, limit: int
    ) -> Sequence[Notification]:
        return self.app.recorder.select_notifications(
            start=after,
            stop=upto,
            limit=limit,
            topics=self.topics[name],
            inclusive_of_start=False,
        )


class InMemoryReadModels(ReadModels):
    """The read models kept in this process, for the in-memory event store.

    The same projections as the projector runs, applied to the events recorded since
    the last read, at every read: reads see every event written before them.
    """

    def __init__(
        self, app: Application[Any], projections: Sequence[type[DocumentProjection]]
    ) -> None:
        self._projections: list[DocumentProjection] = []
        views: dict[str, Documents] = {}
        for projection in projections:
            view = InMemoryDocumentView(tuple(projection.view_class.columns))
            views[projection.name] = view
            self._projections.append(projection(view, app.repository))
        super().__init__(app, projections, views)
        self._lock = threading.Lock()

    def refresh(self) -> None:
        with self._lock:
            for projection in self._projections:
                while batch := self._unapplied(
                    projection.name,
                    projection.documents.max_tracking_id(self.app.name) or 0,
                    None,
                    500,
                ):
                    for notification in batch:
                        event = self.app.mapper.to_domain_event(notification)
                        tracking = Tracking(self.app.name, notification.id)
                        projection.process_event(event, tracking)
