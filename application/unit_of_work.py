"""What a command handler sees: load aggregates, add new ones, nothing else."""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate

from application.ports import Services
from domain.errors import NotFoundError

A = TypeVar("A", bound=Aggregate)


def find_aggregate(
    app: Application[Any], aggregate_id: UUID, version: int | None = None
) -> Aggregate | None:
    """The aggregate with this id as it stands (as of ``version``, if given), or None
    when none was ever saved."""
    try:
        found: Aggregate = app.repository.get(aggregate_id, version=version)
    except AggregateNotFoundError:
        return None
    return found


def aggregate_exists(app: Application[Any], aggregate_id: UUID) -> bool:
    """Whether any event was saved for this id (one row read, nothing reconstructed)."""
    return bool(list(app.recorder.select_events(aggregate_id, limit=1)))


class UnitOfWork:
    """Collects the aggregates one command touches so they are saved in one transaction.

    ``client`` is who the command runs for; an aggregate a command creates is owned by it.
    """

    def __init__(
        self, app: Application[Any], services: Services | None = None, client: str = "system"
    ) -> None:
        self._app = app
        self._services = services
        self.client = client
        self._aggregates: dict[UUID, Aggregate] = {}

    @property
    def services(self) -> Services:
        """The ports (payment gateway, ...) handlers may call."""
        if self._services is None:
            raise RuntimeError("this unit of work was built without services")
        return self._services

    def load(self, aggregate_id: UUID) -> Aggregate | None:
        """The aggregate with this id, whatever its class, or None; kept for the handler."""
        if aggregate_id not in self._aggregates:
            found = find_aggregate(self._app, aggregate_id)
            if found is None:
                return None
            self._aggregates[aggregate_id] = found
        return self._aggregates[aggregate_id]

    def find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        """The aggregate, or None when it does not exist."""
        if aggregate_id not in self._aggregates:
            found = find_aggregate(self._app, aggregate_id)
            if found is None:
                return None
            self._aggregates[aggregate_id] = found
        return self.get(cls, aggregate_id)

    def get(self, cls: type[A], aggregate_id: UUID) -> A:
        """Load an aggregate; a missing one is a domain error (:class:`NotFoundError`)."""
        found = self._aggregates.get(aggregate_id) or find_aggregate(self._app, aggregate_id)
        if found is None:
            raise NotFoundError(f"{cls.__name__} {aggregate_id} does not exist")
        self._aggregates[aggregate_id] = found
        if not isinstance(found, cls):
            raise NotFoundError(f"{aggregate_id} is not a {cls.__name__}")
        return found

    def exists(self, aggregate_id: UUID) -> bool:
        """Whether any aggregate has this id (in this unit or in the store)."""
        return aggregate_id in self._aggregates or aggregate_exists(self._app, aggregate_id)

    def add(self, aggregate: Aggregate) -> None:
        """Register a new aggregate to be saved with the command's outcome."""
        self._aggregates[aggregate.id] = aggregate

    @property
    def aggregates(self) -> list[Aggregate]:
        """Every aggregate loaded or added; unchanged ones save nothing."""
        return list(self._aggregates.values())
