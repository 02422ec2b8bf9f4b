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

    def notifications_of(self, aggregate_ids: Sequence[UUID]) -> list[Notification]:
        """The stored events of these aggregates with their positions in the log (on
        PostgreSQL; the in-memory store keeps no positions per aggregate: none)."""
        recorder = self.app.recorder
        found: list[Notification] = []
        if isinstance(recorder, TransactionOrderedRecorder):
            found = recorder.select_events_of(aggregate_ids)
        return found

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
