"""The event log of the service: commands and domain aggregates share one ordered log.

An aggregate with a long history (a show that sold thousands of seats) is read from its
latest snapshot and the events after it, not replayed from its first event: every
``interval`` events of an aggregate, the save that recorded them also takes a snapshot
(:class:`SnapshottingRepository`). Snapshots are derived from the log, like the views:
one lost, or never taken, costs a longer read, never a wrong one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from functools import cached_property
from itertools import chain
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    ProjectorFunction,
    Repository,
    project_aggregate,
)
from eventsourcing.domain import DomainEventProtocol, MutableOrImmutableAggregate
from eventsourcing.persistence import EventStore, Recording

from application.unit_of_work import aggregate_exists

logger = logging.getLogger(__name__)
# The setting (in the application's environment) of how many events apart an
# aggregate's snapshots are; 0 takes none and reads every history from its start.
SNAPSHOT_INTERVAL = "SNAPSHOT_INTERVAL"
DEFAULT_SNAPSHOT_INTERVAL = 50


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


def _mutate_all(aggregate: Any, events: Iterable[Any]) -> Any:
    """The library's ``project_aggregate`` without its assertion, which checks each
    event against a runtime protocol: about a tenth of a worker's time in a profile of
    sagas on one show."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


class SnapshottingRepository(Repository[UUID]):
    """Reads an aggregate with at most ``interval`` events in one round trip, as the
    library's repository does, and a longer one from its latest snapshot.

    The read asks for the newest ``interval + 1`` events. Fewer came back: that is the
    whole history. As many: the latest snapshot is read too, and the events the first
    read returned after it are applied to it (a snapshot at most ``interval`` events
    old, which the saves take, lies among them); without such a snapshot, the events
    after the latest one (or all of them) are read.
    """

    def __init__(
        self, event_store: EventStore[UUID], snapshots: EventStore[UUID], interval: int
    ) -> None:
        super().__init__(event_store=event_store, snapshot_store=snapshots)
        self.interval = interval

    def _reconstruct_aggregate(
        self,
        aggregate_id: UUID,
        version: int | None,
        projector_func: ProjectorFunction[Any, Any],
    ) -> Any:
        recorder, mapper = self.event_store.recorder, self.event_store.mapper
        snapshots = self.snapshot_store
        assert snapshots is not None, "given at construction"
        window = self.interval + 1
        newest = recorder.select_events(aggregate_id, lte=version, desc=True, limit=window)
        events: Iterable[Any]
        if len(newest) < window:
            start: list[Any] = []
            events = (mapper.to_domain_event(stored) for stored in reversed(newest))
        else:
            start = list(snapshots.get(aggregate_id, desc=True, limit=1, lte=version))
            taken = start[0].originator_version if start else 0
            if taken >= newest[-1].originator_version - 1:
                events = (
                    mapper.to_domain_event(stored)
                    for stored in reversed(newest)
                    if stored.originator_version > taken
                )
            else:
                events = self.event_store.get(aggregate_id, gt=taken or None, lte=version)
        project = _mutate_all if projector_func is project_aggregate else projector_func
        aggregate = project(None, chain(start, events))
        if aggregate is None:
            raise AggregateNotFoundError(f"aggregate {aggregate_id} version {version} not found")
        return aggregate


class BoxofficeApplication(Application[UUID]):
    """The event store: commands and domain aggregates share one ordered log.

    One log keeps a command's outcome and its domain events in one atomic save and
    gives the relay, projections and sagas a single position to track. Every
    ``SNAPSHOT_INTERVAL`` events of an aggregate (50 unless its environment says; 0:
    never), the save also takes a snapshot of it (:class:`SnapshottingRepository`).
    """

    name = "Boxoffice"
    is_snapshotting_enabled = True

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__(env)
        # Asked once, not at every save: a check against a runtime protocol looks up
        # each of the protocol's attributes.
        self._groups_commits = isinstance(self.recorder, GroupsCommits)
        self._guards_absence = isinstance(self.recorder, GuardsAbsence)

    @cached_property
    def snapshot_interval(self) -> int:
        """How many events apart an aggregate's snapshots are (0: none are taken); read
        from the environment once, not at every save."""
        return int(self.env.get(SNAPSHOT_INTERVAL) or DEFAULT_SNAPSHOT_INTERVAL)

    def construct_repository(self) -> Repository[UUID]:
        """:class:`SnapshottingRepository`, or the library's without snapshots."""
        if self.snapshots is None or not self.snapshot_interval:
            return Repository(event_store=self.events)
        return SnapshottingRepository(self.events, self.snapshots, self.snapshot_interval)

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        """A snapshot of each aggregate saved whose version reached a multiple of the
        interval. Never raised: the events are committed, and a missing snapshot only
        makes a read longer (two processes that took the same one, for instance)."""
        interval = self.snapshot_interval
        if self.snapshots is None or not interval:
            return
        for event in processing_event.events:
            version = event.originator_version
            if version % interval or event.originator_id not in processing_event.aggregates:
                continue
            try:
                self.take_snapshot(event.originator_id, version=version)
            except Exception as error:  # noqa: BLE001 - see the docstring
                logger.warning(
                    "snapshot of %s at version %d not taken: %r",
                    event.originator_id,
                    version,
                    error,
                )

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
        if grouped and self._groups_commits:
            kwargs["grouped"] = True
        if absent is not None:
            if self._guards_absence:
                kwargs["absent"] = absent
            elif aggregate_exists(self, absent):
                raise AggregatePresentError(absent)
        return super().save(*objs, **kwargs)
