"""Reads of whole aggregate histories, for tools that replay them (``sagas replay``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import Notification

from infrastructure.log_recorder import TransactionOrderedRecorder


class RecordedHistory:
    """The :class:`~application.saga_replay.EventHistory` of an application's event store:
    one read for a batch of aggregates on PostgreSQL, one per aggregate in memory."""

    def __init__(self, app: Application[Any]) -> None:
        self.app = app

    def saved_with(self, aggregate_id: UUID, topic: str) -> list[Notification]:
        """The other events saved in one transaction with the last event of ``topic`` of
        ``aggregate_id`` (on PostgreSQL, where an event's position carries its
        transaction's id; the in-memory store keeps no transactions: none)."""
        recorder = self.app.recorder
        if not isinstance(recorder, TransactionOrderedRecorder):
            return []
        marks: list[Notification] = recorder.select_events_of([aggregate_id], [topic])
        if not marks:
            return []
        together: list[Notification] = recorder.select_transaction_of(marks[-1].id)
        return [n for n in together if n.originator_id != aggregate_id]

    def pending(
        self, after: int, topics: Sequence[str], cap: int
    ) -> tuple[int, Notification | None]:
        """How many events (of ``topics`` only, if given) the log holds after position
        ``after``, counted up to ``cap``, and the first of them. On PostgreSQL the count
        is one row back: a follower far behind is not read in full at every scrape."""
        recorder = self.app.recorder
        first = recorder.select_notifications(start=after + 1, limit=1, topics=topics)
        if not first:
            return 0, None
        if isinstance(recorder, TransactionOrderedRecorder):
            count = recorder.count_after(after, topics, cap)
        else:
            count = len(recorder.select_notifications(start=after + 1, limit=cap, topics=topics))
        return count, first[0]

    def events_of(
        self, aggregate_ids: Sequence[UUID], topics: Sequence[str] = ()
    ) -> dict[UUID, list[Any]]:
        """The domain events (of ``topics`` only, if given) of each aggregate that has
        any, in version order."""
        recorder = self.app.recorder
        to_event = self.app.mapper.to_domain_event
        found: dict[UUID, list[Any]] = {}
        if isinstance(recorder, TransactionOrderedRecorder):
            for stored in recorder.select_events_of(aggregate_ids, topics):
                found.setdefault(UUID(str(stored.originator_id)), []).append(to_event(stored))
            return found
        for aggregate_id in aggregate_ids:
            events = [
                to_event(stored)
                for stored in recorder.select_events(aggregate_id)
                if not topics or stored.topic in topics
            ]
            if events:
                found[aggregate_id] = events
        return found
