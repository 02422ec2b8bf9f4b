"""Projections that keep one document per aggregate, re-rendered at each of its events.

The aggregate is loaded at the version of the event being processed, so replaying the
log from zero yields exactly the rows that following it live did.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar
from uuid import UUID

from eventsourcing.application import Repository
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from application.command import Command
from application.commands import present_show
from application.documents import present_command
from application.reservations import present_reservation
from domain.reservation import Reservation
from domain.reservation_saga import ReservationSaga, SagaState
from domain.show import Show
from projections.views import DocumentView

V = TypeVar("V", bound=DocumentView)
Render = Callable[[Any], tuple[dict[str, Any], dict[str, Any]]]


class DocumentProjection(Projection[V], Generic[V]):
    """Renders the aggregate of each event into its view's document and columns."""

    aggregate: ClassVar[type[Aggregate]]
    view_class: ClassVar[type[DocumentView]]

    cache_size: ClassVar[int] = 10_000

    def __init__(self, view: V, repository: Repository[Any]) -> None:
        super().__init__(view)
        self.repository = repository
        # Aggregates as of the last event applied to them, most recent last.
        self._recent: OrderedDict[Any, Any] = OrderedDict()

    @classmethod
    def event_topics(cls) -> tuple[str, ...]:
        """The topics of the events this projection follows."""
        return tuple(
            get_topic(value)
            for value in vars(cls.aggregate).values()
            if isinstance(value, type) and issubclass(value, Aggregate.Event)
        )

    def render(self, aggregate: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The document and the indexed column values of ``aggregate``."""
        raise NotImplementedError

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        aggregate = self._at_version_of(domain_event)
        document, columns = self.render(aggregate)
        try:
            self.view.upsert(domain_event.originator_id, document, columns, tracking)
        except BaseException:
            # The view did not take this event: forget a state it does not have.
            self._recent.pop(domain_event.originator_id, None)
            raise
        self._recent[domain_event.originator_id] = aggregate
        self._recent.move_to_end(domain_event.originator_id)
        if len(self._recent) > self.cache_size:
            self._recent.popitem(last=False)

    def _at_version_of(self, domain_event: Any) -> Any:
        """The aggregate as of ``domain_event``: the previous state plus this event when it
        is at hand (as a replay would apply it), else loaded from the store."""
        previous = self._recent.pop(domain_event.originator_id, None)
        if previous is not None and previous.version == domain_event.originator_version - 1:
            return domain_event.mutate(previous)
        return self.repository.get(
            domain_event.originator_id, version=domain_event.originator_version
        )


class CommandRegistryView(DocumentView):
    """The command registry: one row per command, queryable by status, type and ids."""

    table = "command_registry"
    columns: ClassVar[dict[str, str]] = {
        "status": "text",
        "type": "text",
        "aggregate_id": "uuid",
        "correlation_id": "uuid",
    }

    def unfinished_since(self, before: datetime, limit: int) -> list[UUID]:
        """Commands accepted, running or retrying whose last change is before ``before``."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT id FROM command_registry "
                "WHERE status IN ('accepted', 'running', 'retrying') "
                "AND (doc->>'updated_at')::timestamptz < %s ORDER BY seq LIMIT %s",
                (before, limit),
            )
            return [row["id"] for row in curs.fetchall()]


class CommandRegistryProjection(DocumentProjection[CommandRegistryView]):
    """Materializes the command registry."""

    name = "command_registry"
    aggregate = Command
    view_class = CommandRegistryView

    def render(self, aggregate: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        command: Command = aggregate
        document = present_command(command)
        columns = {
            "status": command.status,
            "type": command.command_type,
            "aggregate_id": command.aggregate_id,
            "correlation_id": command.correlation_id,
        }
        return document, columns


class ShowsView(DocumentView):
    """Shows as clients read them."""

    table = "shows"


class ShowsProjection(DocumentProjection[ShowsView]):
    """Materializes the shows read model."""

    name = "shows"
    aggregate = Show
    view_class = ShowsView

    def render(self, aggregate: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        return present_show(aggregate), {}


class ReservationsView(DocumentView):
    """Reservations as clients read them."""

    table = "reservations"
    columns: ClassVar[dict[str, str]] = {"show_id": "text", "status": "text"}


class ReservationsProjection(DocumentProjection[ReservationsView]):
    """Materializes the reservations read model."""

    name = "reservations"
    aggregate = Reservation
    view_class = ReservationsView

    def render(self, aggregate: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        reservation: Reservation = aggregate
        columns = {"show_id": reservation.show_id, "status": reservation.status}
        return present_reservation(reservation), columns


class SagasView(DocumentView):
    """Sagas' states, and the deadlines the saga runner fires."""

    table = "sagas"
    columns: ClassVar[dict[str, str]] = {"state": "text", "deadline_at": "timestamptz"}

    def due(self, now: datetime) -> list[str]:
        """Reservations whose saga is charging past its deadline."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT doc->>'reservation_id' AS reservation_id FROM sagas "
                "WHERE state = %s AND deadline_at <= %s ORDER BY deadline_at",
                (SagaState.CHARGING.value, now),
            )
            return [row["reservation_id"] for row in curs.fetchall()]


def present_saga(saga: ReservationSaga) -> dict[str, Any]:
    """A saga's state."""
    return {
        "saga_id": str(saga.id),
        "reservation_id": saga.reservation_id,
        "show_id": saga.show_id,
        "state": saga.state.value,
        "run": saga.run,
        "deadline_at": saga.deadline_at.isoformat() if saga.deadline_at else None,
    }


class SagasProjection(DocumentProjection[SagasView]):
    """Materializes the sagas read model."""

    name = "sagas"
    aggregate = ReservationSaga
    view_class = SagasView

    def render(self, aggregate: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        saga: ReservationSaga = aggregate
        columns = {"state": saga.state.value, "deadline_at": saga.deadline_at}
        return present_saga(saga), columns


PROJECTIONS: tuple[type[DocumentProjection[Any]], ...] = (
    CommandRegistryProjection,
    ShowsProjection,
    ReservationsProjection,
    SagasProjection,
)
PROJECTIONS_BY_NAME = {projection.name: projection for projection in PROJECTIONS}
