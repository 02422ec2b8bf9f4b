"""The event log of the service: commands and domain aggregates share one ordered log."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.application import Application


class BoxofficeApplication(Application[UUID]):
    """The event store: commands and domain aggregates share one ordered log.

    One log keeps a command's outcome and its domain events in one atomic save and
    gives the relay, projections and sagas a single position to track.
    """

    name = "Boxoffice"
