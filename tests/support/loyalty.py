"""A second saga, shipped with the tests to show that a saga is a slice and nothing else:
a confirmed reservation earns its customer loyalty points.

Loaded by ``COMMAND_MODULES=tests.support.loyalty``, its ``register`` adds one command
(``AwardPoints`` on a :class:`LoyaltyAccount`) and one saga (:class:`LoyaltySaga`, run by
:data:`LOYALTY`): started when a reservation is confirmed, it awards the points and
finishes when they are awarded. The saga runner, the replay and the operator's tools
run it without a line changed; docs/extending.md walks through this file.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from pydantic import Field

from application.catalog import CommandCatalog, CommandSpec
from application.payloads import Payload, ResourceId, Text100
from application.saga_runner import event_class
from application.saga_slice import SagaSlice, SagaSteps
from application.unit_of_work import UnitOfWork
from domain.ids import aggregate_id
from domain.reservation import Reservation
from domain.saga import Saga, issue

AWARD_POINTS = "AwardPoints"
POINTS_PER_SEAT = 10


# --- the domain: an aggregate and a saga ------------------------------------------------


class LoyaltyAccount(Aggregate):
    """A customer's points; each reservation earns points once."""

    @staticmethod
    def create_id(customer_id: str) -> UUID:
        return aggregate_id("loyalty", customer_id)

    @event("LoyaltyAccountOpened")
    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.points = 0
        self.earned_for: list[str] = []

    def award(self, reservation_id: str, points: int) -> None:
        """Add ``points`` earned by ``reservation_id``, unless it earned them already."""
        if reservation_id not in self.earned_for:
            self._awarded(reservation_id=reservation_id, points=points)

    @event("PointsAwarded")
    def _awarded(self, reservation_id: str, points: int) -> None:
        self.points += points
        self.earned_for.append(reservation_id)


class LoyaltyState(StrEnum):
    """Where a loyalty saga stands."""

    AWARDING = "awarding"
    DONE = "done"


class LoyaltySaga(Saga):
    """Awards the points of one confirmed reservation."""

    class Event(Saga.Event):
        """Base of the loyalty saga's events."""

    class Created(Event, Aggregate.Created):
        """Base of the event that starts a loyalty saga."""

    @staticmethod
    def create_id(reservation_id: str, **_: Any) -> UUID:
        return aggregate_id("loyalty-saga", reservation_id)

    @classmethod
    def start(
        cls, reservation_id: str, customer_id: str, seats: int, owner: str | None
    ) -> LoyaltySaga:
        """Begin by awarding the points of ``seats`` seats."""
        award = issue(
            AWARD_POINTS,
            "award",
            customer_id=customer_id,
            reservation_id=reservation_id,
            points=seats * POINTS_PER_SEAT,
        )
        return cls(
            reservation_id=reservation_id, customer_id=customer_id, owner=owner, commands=[award]
        )

    @event("LoyaltySagaStarted")
    def __init__(
        self,
        reservation_id: str,
        customer_id: str,
        owner: str | None,
        commands: list[dict[str, Any]],
    ) -> None:
        self.reservation_id = reservation_id
        self.customer_id = customer_id
        self.owner = owner
        self.state = LoyaltyState.AWARDING
        self.issued = commands
        self.decisions: list[dict[str, Any]] = []

    @property
    def is_finished(self) -> bool:
        return self.state is LoyaltyState.DONE

    def points_awarded(self) -> None:
        """The points are in the account: done."""
        if self.state is LoyaltyState.AWARDING:
            self._done(commands=[])

    @event("LoyaltySagaFinished")
    def _done(self, commands: list[dict[str, Any]]) -> None:
        self.state = LoyaltyState.DONE
        self.issued = commands


# --- the application: a command and the saga's slice --------------------------------------


class AwardPoints(Payload):
    """Add the points a reservation earned to its customer's account."""

    customer_id: Text100
    reservation_id: ResourceId
    points: Annotated[int, Field(ge=0, le=1_000_000)]


def award_points(uow: UnitOfWork, cmd: AwardPoints) -> None:
    """Open the account on first use, then award."""
    account_id = LoyaltyAccount.create_id(cmd.customer_id)
    account = uow.find(LoyaltyAccount, account_id)
    if account is None:
        account = LoyaltyAccount(cmd.customer_id)
        uow.add(account)
    account.award(cmd.reservation_id, cmd.points)


CONFIRMED = event_class(Reservation, "ReservationConfirmed")
AWARDED = event_class(LoyaltyAccount, "PointsAwarded")


class LoyaltySlice(SagaSlice[LoyaltySaga]):
    """A loyalty saga per confirmed reservation."""

    saga_class = LoyaltySaga
    events: ClassVar[tuple[type[Aggregate.Event], ...]] = (CONFIRMED, AWARDED)
    issues: ClassVar[frozenset[str]] = frozenset({AWARD_POINTS})
    subject = "reservation_id"

    def subject_of(self, saga: LoyaltySaga) -> str:
        return saga.reservation_id

    def inputs_of(self, saga: LoyaltySaga) -> Sequence[UUID]:
        return [
            Reservation.create_id(saga.reservation_id),
            LoyaltyAccount.create_id(saga.customer_id),
        ]

    def react(self, event: Any, source: Any, steps: SagaSteps) -> None:
        cause = f"{event.originator_id}:{event.originator_version}"
        if isinstance(event, CONFIRMED):
            seats = len(source.seats)
            saga = self.saga_class.start(
                source.reservation_id, source.customer_id, seats, owner=source.owner
            )
            steps.start(saga, cause)
        elif isinstance(event, AWARDED):
            # The account as of the event: the last reservation in it is the one awarded.
            saga_id = self.saga_id(source.earned_for[-1])
            steps.decide(saga_id, cause, lambda saga: saga.points_awarded())


LOYALTY = LoyaltySlice()


def register(catalog: CommandCatalog) -> None:
    """Add the loyalty command and saga."""
    catalog.register(
        CommandSpec(
            name=AWARD_POINTS,
            payload=AwardPoints,
            handler=award_points,
            target=lambda c: LoyaltyAccount.create_id(c.customer_id),
            resource="/loyalty/{customer_id}",
        )
    )
    catalog.register_saga(LOYALTY)
