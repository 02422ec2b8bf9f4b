"""ReservationSaga: the process manager of one reservation.

reserve seats → charge payment → confirm; a decline releases the seats and rejects
(compensation); taken seats put the reservation on the waiting list, and seats held
for it later run it again; no payment outcome before the deadline releases the seats
and expires it.

It follows the reservation's own events, which the reservation's commands write one
at a time (optimistic concurrency), so they reach the saga in the order they happened.
Refunds are not the saga's: whatever ends a paid reservation short of confirmation
refunds it in the same save, so no interleaving leaves money behind.

Each decision is one event that names the commands it issues, so the saga runner can
record the decision and the commands in one transaction. Every handler is guarded by
the saga's state: an event delivered again finds the step taken and changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.ids import aggregate_id
from domain.saga import Saga, issue


class SagaState(StrEnum):
    """Where a reservation's saga stands; stored by value, so a value never changes."""

    RESERVING = "reserving"
    WAITLISTED = "waitlisted"
    CHARGING = "charging"
    CONFIRMING = "confirming"
    COMPENSATING = "compensating"
    EXPIRING = "expiring"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


TERMINAL = frozenset(
    {SagaState.CONFIRMED, SagaState.REJECTED, SagaState.EXPIRED, SagaState.CANCELLED}
)

# The types of the commands the saga issues, as the application registers them; they
# are stored in the saga's events, so a rename needs a new name, not an edit.
RESERVE_SEATS = "ReserveSeats"
CHARGE_PAYMENT = "ChargePayment"
CONFIRM_RESERVATION = "ConfirmReservation"
REJECT_RESERVATION = "RejectReservation"
EXPIRE_RESERVATION = "ExpireReservation"
ISSUED_TYPES = frozenset(
    {RESERVE_SEATS, CHARGE_PAYMENT, CONFIRM_RESERVATION, REJECT_RESERVATION, EXPIRE_RESERVATION}
)


class ReservationSaga(Saga):
    """One reservation's process; its :class:`SagaState` says which step it is at, and
    ``decisions`` what it decided when, with the types of the commands each issued."""

    class Event(Saga.Event):
        """Base of the saga's events: each one is a decision, kept in ``decisions``."""

    class Created(Event, Aggregate.Created):
        """Base of the event that starts a saga."""

    @staticmethod
    def create_id(reservation_id: str, **_: Any) -> UUID:
        """The saga of reservation ``reservation_id``."""
        return aggregate_id("saga", reservation_id)

    @classmethod
    def start(cls, reservation_id: str, show_id: str, owner: str | None = None) -> ReservationSaga:
        """Begin by reserving the seats; ``owner`` is the reservation's."""
        return cls(
            reservation_id=reservation_id,
            show_id=show_id,
            owner=owner,
            commands=[issue(RESERVE_SEATS, "reserve-1", reservation_id=reservation_id)],
        )

    @event("SagaStarted")
    def __init__(
        self,
        reservation_id: str,
        show_id: str,
        commands: list[dict[str, Any]],
        owner: str | None = None,
    ) -> None:
        self.reservation_id = reservation_id
        self.owner = owner
        self.show_id = show_id
        self.state = SagaState.RESERVING
        self.run = 1
        self.deadline_at: datetime | None = None
        self.issued = commands
        self.decisions: list[dict[str, Any]] = []

    def _command(self, command_type: str, step: str, **payload: Any) -> dict[str, Any]:
        """A command of this run for this saga's reservation."""
        return issue(
            command_type, f"{step}-{self.run}", reservation_id=self.reservation_id, **payload
        )

    def _compensate(self, reason: str) -> None:
        """Release the seats and reject: what a failure after reserving calls for."""
        reject = self._command(REJECT_RESERVATION, "reject", reason=reason)
        self._compensating(reason=reason, commands=[reject])

    @property
    def is_finished(self) -> bool:
        """True in a terminal state."""
        return self.state in TERMINAL

    def seats_reserved(self, deadline_at: datetime) -> None:
        """The seats are held: charge the payment, due by ``deadline_at``."""
        if self.state is SagaState.RESERVING:
            charge = self._command(CHARGE_PAYMENT, "charge")
            self._seats_held(deadline_at=deadline_at, commands=[charge])

    @event("SagaSeatsHeld")
    def _seats_held(self, deadline_at: datetime, commands: list[dict[str, Any]]) -> None:
        self.state = SagaState.CHARGING
        self.deadline_at = deadline_at
        self.issued = commands

    def seats_unavailable(self) -> None:
        """The seats were taken: the reservation waits on the show's waiting list."""
        if self.state is SagaState.RESERVING:
            self._waitlisted(commands=[])

    @event("SagaWaitlisted")
    def _waitlisted(self, commands: list[dict[str, Any]]) -> None:
        self.state = SagaState.WAITLISTED
        self.issued = commands

    def cannot_reserve(self, reason: str) -> None:
        """Reserving failed for good (the show was cancelled, say): reject."""
        if self.state is SagaState.RESERVING:
            self._compensate(reason)

    def offered(self, deadline_at: datetime) -> None:
        """Seats came free and are held for the waiting reservation: charge, in a new run."""
        if self.state is SagaState.WAITLISTED:
            run = self.run + 1
            charge = issue(CHARGE_PAYMENT, f"charge-{run}", reservation_id=self.reservation_id)
            self._resumed(run=run, deadline_at=deadline_at, commands=[charge])

    @event("SagaResumed")
    def _resumed(self, run: int, deadline_at: datetime, commands: list[dict[str, Any]]) -> None:
        self.state = SagaState.CHARGING
        self.run = run
        self.deadline_at = deadline_at
        self.issued = commands

    def payment_captured(self) -> None:
        """Paid: confirm."""
        if self.state is SagaState.CHARGING:
            self._confirming(commands=[self._command(CONFIRM_RESERVATION, "confirm")])

    @event("SagaConfirming")
    def _confirming(self, commands: list[dict[str, Any]]) -> None:
        self.state = SagaState.CONFIRMING
        self.issued = commands

    def payment_declined(self, reason: str) -> None:
        """Declined: release the seats and reject (compensation)."""
        if self.state is SagaState.CHARGING:
            self._compensate(reason)

    @event("SagaCompensating")
    def _compensating(self, reason: str, commands: list[dict[str, Any]]) -> None:
        self.state = SagaState.COMPENSATING
        self.issued = commands

    def deadline_passed(self, now: datetime) -> None:
        """No payment outcome by the deadline: release the seats and expire."""
        if (
            self.state is SagaState.CHARGING
            and self.deadline_at is not None
            and now >= self.deadline_at
        ):
            self._expiring(commands=[self._command(EXPIRE_RESERVATION, "expire")], at=now)

    @event("SagaExpiring")
    def _expiring(self, commands: list[dict[str, Any]], at: datetime | None = None) -> None:
        # ``at`` is the runner's time when it found the deadline passed (a replay fires
        # the deadline at that time); events recorded before it was kept have none.
        self.state = SagaState.EXPIRING
        self.issued = commands

    def reservation_finished(self, state: SagaState) -> None:
        """The reservation ended; ``state`` is the terminal state that ends the saga."""
        if state not in TERMINAL or self.state is state:
            return
        # A cancellation ends the saga from any state, even a finished one (a confirmed
        # reservation can be cancelled); other outcomes only end a running saga.
        if state is SagaState.CANCELLED or not self.is_finished:
            self._finished(state=state)

    @event("SagaFinished")
    def _finished(self, state: str) -> None:
        self.state = SagaState(state)
        self.deadline_at = None
        self.issued = []
