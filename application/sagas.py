"""The saga runner: follows the event log and drives each reservation's saga.

For each event it loads the saga of the reservation concerned, lets it decide, and
saves the decision together with the commands it issues in one transaction. Those
commands go through the same pipeline as a client's (relay, workers, registry), with
the saga's id as correlation id and the causing event as causation id. A redelivered
event finds the step taken (the saga's guards) or the commands already issued (their
ids derive from the saga and the step), and changes nothing.

It also fires deadlines: a saga charging past its deadline expires its reservation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from application.command import Command
from application.pipeline import CommandPipeline, Submission
from application.unit_of_work import find_aggregate
from domain.payment import Payment
from domain.reservation import Reservation
from domain.reservation_saga import ReservationSaga
from domain.show import Show
from domain.waiting_list import WaitingList

logger = logging.getLogger(__name__)

RESERVATION_FINISHED = {
    "ReservationConfirmed": "confirmed",
    "ReservationRejected": "rejected",
    "ReservationExpired": "expired",
    "ReservationCancelled": "cancelled",
}


def _topics(cls: type[Aggregate], *names: str) -> list[str]:
    return [get_topic(getattr(cls, name)) for name in names]


class SagaRunner:
    """Routes events to sagas (and to the show-level policies) and records decisions."""

    name = "saga_runner"

    def __init__(
        self,
        view: TrackingRecorder,
        app: Application[Any],
        pipeline: CommandPipeline,
        payment_deadline: timedelta,
        due: Callable[[datetime], Iterable[str]] = lambda now: (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.view = view
        self.app = app
        self.pipeline = pipeline
        self.payment_deadline = payment_deadline
        self.due = due
        self.clock = clock

    @staticmethod
    def event_topics() -> tuple[str, ...]:
        """The events the sagas react to."""
        return tuple(
            _topics(Reservation, "ReservationPlaced", "ReservationOffered", *RESERVATION_FINISHED)
            + _topics(Show, "SeatsReserved", "SeatsReleased", "ShowCancelled")
            + _topics(Payment, "PaymentCaptured", "PaymentDeclined")
            + [get_topic(Command.CommandFailed)]
        )

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Decide on ``domain_event``, then advance the runner's position."""
        self.route(domain_event)
        self.view.insert_tracking(tracking)

    def route(self, event: Any) -> None:
        """Hand ``event`` to the saga or policy it concerns."""
        name = type(event).__name__
        cause = f"{event.originator_id}:{event.originator_version}"
        at_version: Any = self.app.repository.get(
            event.originator_id, version=event.originator_version
        )
        if name == "ReservationPlaced":
            self._start(at_version, cause)
        elif name == "ReservationOffered":
            self._decide(at_version.reservation_id, cause, lambda saga: saga.offered())
        elif name in RESERVATION_FINISHED:
            status = RESERVATION_FINISHED[name]
            self._decide(
                at_version.reservation_id, cause, lambda saga: saga.reservation_finished(status)
            )
        elif name == "SeatsReserved":
            deadline = self.clock() + self.payment_deadline
            self._decide(event.reservation_id, cause, lambda saga: saga.seats_reserved(deadline))
        elif name == "PaymentCaptured":
            self._decide(at_version.reservation_id, cause, lambda saga: saga.payment_captured())
        elif name == "PaymentDeclined":
            reason = at_version.reason or "declined"
            self._decide(
                at_version.reservation_id, cause, lambda saga: saga.payment_declined(reason)
            )
        elif name == "CommandFailed":
            self._reserve_failed(at_version, cause)
        elif name == "SeatsReleased":
            self._issue(
                "PromoteWaitingCustomers",
                f"promote-{at_version.show_id}-{event.originator_version}",
                {"show_id": at_version.show_id},
                cause,
            )
        elif name == "ShowCancelled":
            self._cancel_reservations_of(at_version, cause)

    def fire_deadlines(self) -> int:
        """Expire the reservations whose payment deadline has passed; returns how many."""
        now = self.clock()
        fired = 0
        for reservation_id in self.due(now):
            fired += self._decide(
                reservation_id, f"deadline:{now.isoformat()}", lambda s: s.deadline_passed(now)
            )
        return fired

    def _start(self, reservation: Reservation, cause: str) -> None:
        if self._saga(reservation.reservation_id) is None:
            saga = ReservationSaga.start(reservation.reservation_id, reservation.show_id)
            self._record(saga, cause)

    def _reserve_failed(self, command: Command, cause: str) -> None:
        if command.command_type != "ReserveSeats" or command.error is None:
            return
        reservation_id = command.payload["reservation_id"]
        if command.error["type"] == "SeatUnavailableError":
            self._decide(reservation_id, cause, lambda saga: saga.seats_unavailable())
        else:
            reason = str(command.error.get("message", "seats could not be reserved"))
            self._decide(reservation_id, cause, lambda saga: saga.cannot_reserve(reason))

    def _cancel_reservations_of(self, show: Show, cause: str) -> None:
        waiting: Any = self._find(WaitingList.create_id(show.show_id))
        waiting_ids = waiting.reservation_ids if waiting is not None else []
        for reservation_id in [*show.reservation_ids, *waiting_ids]:
            self._issue(
                "CancelReservation",
                f"cancel-with-show-{reservation_id}",
                {"reservation_id": reservation_id, "reason": f"show {show.show_id} cancelled"},
                cause,
            )

    def _decide(
        self, reservation_id: str, cause: str, decide: Callable[[ReservationSaga], None]
    ) -> int:
        saga = self._saga(reservation_id)
        if saga is None:
            return 0
        version = saga.version
        decide(saga)
        if saga.version == version:
            return 0  # the step was taken already: a redelivered event
        return self._record(saga, cause)

    def _record(self, saga: ReservationSaga, cause: str) -> int:
        commands = [
            self._command(c["type"], f"{saga.id}:{c['key']}", c["payload"], cause, saga)
            for c in saga.issued
        ]
        try:
            self.app.save(saga, *commands)
        except IntegrityError:
            logger.info("saga %s: decision on %s was recorded already", saga.id, cause)
            return 0
        return 1

    def _issue(self, command_type: str, key: str, payload: dict[str, Any], cause: str) -> None:
        try:
            self.app.save(self._command(command_type, key, payload, cause, None))
        except IntegrityError:
            logger.info("%s %s was issued already", command_type, key)

    def _command(
        self,
        command_type: str,
        key: str,
        payload: dict[str, Any],
        cause: str,
        saga: ReservationSaga | None,
    ) -> Command:
        spec = self.pipeline.registry.get(command_type)
        return self.pipeline.prepare(
            Submission(
                spec=spec,
                payload=spec.payload.model_validate(payload),
                submitted_by="saga",
                idempotency_key=key,
                correlation_id=saga.id if saga is not None else None,
                causation_id=cause,
            )
        )

    def _saga(self, reservation_id: str) -> ReservationSaga | None:
        found = self._find(ReservationSaga.create_id(reservation_id))
        return found if isinstance(found, ReservationSaga) else None

    def _find(self, aggregate_id: Any) -> object:
        return find_aggregate(self.app, aggregate_id)
