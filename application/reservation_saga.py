"""The reservation saga's slice: which events drive a :class:`ReservationSaga`, and the
show-level policy that goes with it (a cancelled show cancels its reservations).

A reservation's events reach its saga in the order they happened (the reservation's
commands write it one at a time); the deadline of each charge is the runner's time
plus the payment deadline setting (``Services.payment_deadline``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from application.command import Command
from application.reservations import CANCEL_RESERVATION
from application.saga_runner import event_class
from application.saga_slice import SagaSlice, SagaSteps
from domain.reservation import Reservation
from domain.reservation_saga import ISSUED_TYPES, RESERVE_SEATS, ReservationSaga, SagaState
from domain.show import Show

PLACED = event_class(Reservation, "ReservationPlaced")
SEATS_HELD = event_class(Reservation, "ReservationSeatsHeld")
WAITLISTED = event_class(Reservation, "ReservationWaitlisted")
OFFERED = event_class(Reservation, "ReservationOffered")
PAID = event_class(Reservation, "ReservationPaid")
PAYMENT_DECLINED = event_class(Reservation, "ReservationPaymentDeclined")
SHOW_CANCELLED = event_class(Show, "ShowCancelled")
RESERVATION_FINISHED: dict[type[Aggregate.Event], SagaState] = {
    event_class(Reservation, "ReservationConfirmed"): SagaState.CONFIRMED,
    event_class(Reservation, "ReservationRejected"): SagaState.REJECTED,
    event_class(Reservation, "ReservationExpired"): SagaState.EXPIRED,
    event_class(Reservation, "ReservationCancelled"): SagaState.CANCELLED,
}


class ReservationSagaSlice(SagaSlice[ReservationSaga]):
    """Runs a :class:`ReservationSaga` per reservation placed."""

    saga_class = ReservationSaga
    events: ClassVar[tuple[type[Aggregate.Event], ...]] = (
        PLACED,
        SEATS_HELD,
        WAITLISTED,
        OFFERED,
        PAID,
        PAYMENT_DECLINED,
        *RESERVATION_FINISHED,
        SHOW_CANCELLED,
    )
    issues: ClassVar[frozenset[str]] = ISSUED_TYPES | {CANCEL_RESERVATION}
    failed_commands: ClassVar[frozenset[str]] = frozenset({RESERVE_SEATS})
    deadline_events: ClassVar[tuple[type[Aggregate.Event], ...]] = (
        event_class(ReservationSaga, "SagaExpiring"),
    )
    subject = "reservation_id"

    def subject_of(self, saga: ReservationSaga) -> str:
        return saga.reservation_id

    def key_of(self, event: Any, source: Callable[[], Any]) -> UUID:
        # A saga decides on its reservation's events and on its failed reserves: both
        # go by the reservation (a show's cancellation issues commands of no saga).
        if isinstance(event, Command.CommandFailed):
            reservation_id = source().payload.get("reservation_id")
            if isinstance(reservation_id, str):
                return Reservation.create_id(reservation_id)
        return super().key_of(event, source)

    def inputs_of(self, saga: ReservationSaga) -> Sequence[UUID]:
        return [Reservation.create_id(saga.reservation_id)]

    def react(self, event: Any, source: Any, steps: SagaSteps) -> None:
        cause = f"{event.originator_id}:{event.originator_version}"
        if isinstance(event, PLACED):
            saga = self.saga_class.start(source.reservation_id, source.show_id, owner=source.owner)
            steps.start(saga, cause)
        elif isinstance(event, Reservation.Event):
            decision = self._decision(event, source, steps)
            if decision is not None:
                steps.decide(self.saga_id(source.reservation_id), cause, decision)
        elif isinstance(event, Command.CommandFailed):
            self._reserve_failed(source, cause, steps)
        elif isinstance(event, SHOW_CANCELLED):
            self._cancel_reservations_of(source, cause, steps)

    def _decision(
        self, event: Any, reservation: Reservation, steps: SagaSteps
    ) -> Callable[[ReservationSaga], None] | None:
        """What a reservation's event asks of its saga."""
        deadline = steps.now() + steps.services.payment_deadline
        if isinstance(event, SEATS_HELD):
            return lambda saga: saga.seats_reserved(deadline)
        if isinstance(event, WAITLISTED):
            return lambda saga: saga.seats_unavailable()
        if isinstance(event, OFFERED):
            return lambda saga: saga.offered(deadline)
        if isinstance(event, PAID):
            return lambda saga: saga.payment_captured()
        if isinstance(event, PAYMENT_DECLINED):
            reason = reservation.reason or "declined"
            return lambda saga: saga.payment_declined(reason)
        ended = RESERVATION_FINISHED.get(type(event))
        if ended is not None:
            return lambda saga: saga.reservation_finished(ended)
        return None

    def _reserve_failed(self, command: Command, cause: str, steps: SagaSteps) -> None:
        # Taken seats do not fail a reserve (the reservation waits instead): a failed
        # reserve is final (the show was cancelled, say), so the reservation is rejected.
        if command.error is None:
            return
        reason = str(command.error.get("message", "seats could not be reserved"))
        saga_id = self.saga_id(command.payload["reservation_id"])
        steps.decide(saga_id, cause, lambda saga: saga.cannot_reserve(reason))

    @staticmethod
    def _cancel_reservations_of(show: Show, cause: str, steps: SagaSteps) -> None:
        for reservation_id in [*show.reservation_ids, *show.waiting_ids]:
            reservation = steps.get(Reservation.create_id(reservation_id))
            steps.issue(
                CANCEL_RESERVATION,
                f"cancel-with-show-{reservation_id}",
                {"reservation_id": reservation_id, "reason": f"show {show.show_id} cancelled"},
                cause,
                owner=getattr(reservation, "owner", None),
            )


RESERVATION_SAGA = ReservationSagaSlice()
