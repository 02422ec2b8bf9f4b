"""The event log of the service: commands and domain aggregates share one ordered log."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol, MutableOrImmutableAggregate
from eventsourcing.persistence import Recording

from application.unit_of_work import aggregate_exists


class AggregatePresentError(Exception):
    """Raised by a save given ``absent`` when that aggregate has events already: the
    save recorded nothing."""

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(f"aggregate {aggregate_id} has events")
        self.aggregate_id = aggregate_id


@runtime_checkable
class GuardsAbsence(Protocol):
    """A recorder whose ``insert_events`` takes ``absent`` (an aggregate id) and checks
    in the write itself that the aggregate has no events, raising
    :class:`AggregatePresentError` and recording nothing when it has."""

    guards_absence: bool


@runtime_checkable
class GroupsCommits(Protocol):
    """A recorder whose ``insert_events`` takes ``grouped``: a save of one event so
    marked may be written in one transaction with other such saves made at the same
    time by the process, and returns once that transaction has committed."""

    groups_commits: bool


class BoxofficeApplication(Application[UUID]):
    """The event store: commands and domain aggregates share one ordered log.

    One log keeps a command's outcome and its domain events in one atomic save and
    gives the relay, projections and sagas a single position to track.
    """

    name = "Boxoffice"

    def save(
        self,
        *objs: MutableOrImmutableAggregate[UUID] | DomainEventProtocol[UUID] | None,
        absent: UUID | None = None,
        grouped: bool = False,
        **kwargs: Any,
    ) -> list[Recording[UUID]]:
        """:meth:`Application.save`; given ``absent``, only if that aggregate has no
        events (else :class:`AggregatePresentError`, and nothing is recorded). A
        recorder that :class:`GuardsAbsence` checks in its write (one round trip); for
        another (the in-memory store) the check is a read before it. A ``grouped``
        save may share its transaction with others (a recorder that
        :class:`GroupsCommits`): for the saves that wait on nothing but their commit."""
        if grouped and isinstance(self.recorder, GroupsCommits):
            kwargs["grouped"] = True
        if absent is not None:
            if isinstance(self.recorder, GuardsAbsence):
                kwargs["absent"] = absent
            elif aggregate_exists(self, absent):
                raise AggregatePresentError(absent)
        return super().save(*objs, **kwargs)
