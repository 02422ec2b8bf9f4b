"""The saga runner: follows the event log and drives each reservation's saga.

For each event it loads the saga of the reservation concerned, lets it decide, and
saves the decision together with the commands it issues in one transaction. Those
commands go through the same pipeline as a client's (relay, workers, registry), with
the saga's id as correlation id and the causing event as causation id. A redelivered
event finds the step taken (the saga's guards) or the commands already issued (their
ids derive from the saga and the step), and changes nothing.

It also fires deadlines: a saga charging past its deadline expires its reservation.
And it carries out one show-level policy: a cancelled show cancels its reservations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from application.command import Command
from application.pipeline import CommandPipeline, Submission, command_id_of
from application.reservations import CANCEL_RESERVATION
from application.unit_of_work import find_aggregate
from domain.reservation import Reservation
from domain.reservation_saga import ISSUED_TYPES, RESERVE_SEATS, ReservationSaga, SagaState
from domain.show import Show

logger = logging.getLogger(__name__)
# Who submits the commands sagas issue, in the registry and in their ids.
SAGA_CLIENT = "saga"


def event_class(aggregate: type[Aggregate], name: str) -> type[Aggregate.Event]:
    """The event class ``@event`` made on ``aggregate``; a rename fails here, at import."""
    cls = getattr(aggregate, name)
    if not (isinstance(cls, type) and issubclass(cls, Aggregate.Event)):
        raise TypeError(f"{aggregate.__name__}.{name} is not an event class")
    return cls


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
ROUTED: tuple[type[Aggregate.Event], ...] = (
    PLACED,
    SEATS_HELD,
    WAITLISTED,
    OFFERED,
    PAID,
    PAYMENT_DECLINED,
    *RESERVATION_FINISHED,
    SHOW_CANCELLED,
    Command.CommandFailed,
)


class SagaStore(Protocol):
    """Where the runner reads aggregates and records its decisions: the event store when
    it runs, a capture of the decisions when sagas are replayed (a ``dry_run``, to which
    the runner hands no commands: the decisions name them)."""

    dry_run: bool

    def get(self, aggregate_id: UUID, version: int | None = None) -> Aggregate | None:
        """The aggregate as of ``version`` (its latest without one), or None if none."""
        ...

    def save(self, *aggregates: Aggregate) -> None:
        """Record the aggregates' new events in one transaction; raises
        :class:`~eventsourcing.persistence.IntegrityError` when one was recorded already."""
        ...


class ApplicationStore:
    """The :class:`SagaStore` of the event store."""

    dry_run = False

    def __init__(self, app: Application[Any]) -> None:
        self.app = app

    def get(self, aggregate_id: UUID, version: int | None = None) -> Aggregate | None:
        return find_aggregate(self.app, aggregate_id, version)

    def save(self, *aggregates: Aggregate) -> None:
        self.app.save(*aggregates)


class SagaRunner:
    """Routes events to sagas (and to the show-level policy) and records decisions.

    ``saga_class`` is the process manager it runs: :class:`ReservationSaga`, or a
    candidate version of it that a replay tries on the recorded history.
    """

    name = "saga_runner"

    def __init__(
        self,
        view: TrackingRecorder | None,
        store: SagaStore,
        pipeline: CommandPipeline,
        payment_deadline: timedelta,
        due: Callable[[datetime], Iterable[str]] = lambda now: (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        saga_class: type[ReservationSaga] = ReservationSaga,
    ) -> None:
        self.view = view
        self.store = store
        self.saga_class = saga_class
        self.pipeline = pipeline
        self.payment_deadline = payment_deadline
        self.due = due
        self.clock = clock
        unknown = (ISSUED_TYPES | {CANCEL_RESERVATION}) - {s.name for s in pipeline.registry}
        if unknown:
            # Fail at start-up, not when a saga first issues the missing command.
            raise LookupError(f"the sagas issue unregistered commands: {sorted(unknown)}")

    @staticmethod
    def event_topics() -> tuple[str, ...]:
        """The events the sagas react to."""
        return tuple(get_topic(cls) for cls in ROUTED)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Decide on ``domain_event``, then advance the runner's position."""
        self.route(domain_event)
        assert self.view is not None, "a runner that follows the log tracks its position"
        self.view.insert_tracking(tracking)

    def route(self, event: Any) -> None:
        """Hand ``event`` to the saga or policy it concerns."""
        cause = f"{event.originator_id}:{event.originator_version}"
        at_version: Any = self.store.get(event.originator_id, version=event.originator_version)
        if isinstance(event, PLACED):
            self._start(at_version, cause)
        elif isinstance(event, Reservation.Event):
            decision = self._decision(event, at_version)
            if decision is not None:
                self._decide(at_version.reservation_id, cause, decision)
        elif isinstance(event, Command.CommandFailed):
            self._reserve_failed(at_version, cause)
        elif isinstance(event, SHOW_CANCELLED):
            self._cancel_reservations_of(at_version, cause)

    def _decision(
        self, event: Any, reservation: Reservation
    ) -> Callable[[ReservationSaga], None] | None:
        """What a reservation's event asks of its saga."""
        deadline = self.clock() + self.payment_deadline
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

    def fire_deadlines(self) -> int:
        """Expire the reservations whose payment deadline has passed; returns how many."""
        now = self.clock()
        return sum(self.deadline_reached(reservation_id, now) for reservation_id in self.due(now))

    def deadline_reached(self, reservation_id: str, now: datetime) -> int:
        """Tell the saga of ``reservation_id`` that it is ``now``; 1 if it decided."""
        return self._decide(
            reservation_id, f"deadline:{now.isoformat()}", lambda s: s.deadline_passed(now)
        )

    def _start(self, reservation: Reservation, cause: str) -> None:
        if self._saga(reservation.reservation_id) is None:
            saga = self.saga_class.start(
                reservation.reservation_id, reservation.show_id, owner=reservation.owner
            )
            self._record(saga, cause)

    def _reserve_failed(self, command: Command, cause: str) -> None:
        # Taken seats do not fail a reserve (the reservation waits instead): a failed
        # reserve is final (the show was cancelled, say), so the reservation is rejected.
        if command.command_type != RESERVE_SEATS or command.error is None:
            return
        reason = str(command.error.get("message", "seats could not be reserved"))
        self._decide(
            command.payload["reservation_id"], cause, lambda saga: saga.cannot_reserve(reason)
        )

    def _cancel_reservations_of(self, show: Show, cause: str) -> None:
        for reservation_id in [*show.reservation_ids, *show.waiting_ids]:
            reservation = self.store.get(Reservation.create_id(reservation_id))
            self._issue(
                CANCEL_RESERVATION,
                f"cancel-with-show-{reservation_id}",
                {"reservation_id": reservation_id, "reason": f"show {show.show_id} cancelled"},
                cause,
                owner=getattr(reservation, "owner", None),
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
        if self.store.dry_run:
            # The decision names its commands: checking their payloads is all a dry
            # run needs (an invalid one fails here as it would when issued).
            for c in saga.issued:
                self.pipeline.registry.get(c["type"]).payload.model_validate(c["payload"])
            commands: list[Command] = []
        else:
            commands = [
                self._command(
                    c["type"], issued_key(saga.id, c["key"]), c["payload"], cause, saga.owner, saga
                )
                for c in saga.issued
            ]
        try:
            self.store.save(saga, *commands)
        except IntegrityError:
            logger.info("saga %s: decision on %s was recorded already", saga.id, cause)
            return 0
        return 1

    def _issue(
        self, command_type: str, key: str, payload: dict[str, Any], cause: str, owner: str | None
    ) -> None:
        try:
            self.store.save(self._command(command_type, key, payload, cause, owner))
        except IntegrityError:
            logger.info("%s %s was issued already", command_type, key)

    def _command(
        self,
        command_type: str,
        key: str,
        payload: dict[str, Any],
        cause: str,
        owner: str | None,
        saga: ReservationSaga | None = None,
    ) -> Command:
        """A command the saga (or the show policy) issues on behalf of ``owner``."""
        spec = self.pipeline.registry.get(command_type)
        return self.pipeline.prepare(
            Submission(
                spec=spec,
                payload=spec.payload.model_validate(payload),
                submitted_by=SAGA_CLIENT,
                idempotency_key=key,
                correlation_id=saga.id if saga is not None else None,
                causation_id=cause,
                owner=owner,
            )
        )

    def _saga(self, reservation_id: str) -> ReservationSaga | None:
        found = self.store.get(self.saga_class.create_id(reservation_id))
        return found if isinstance(found, ReservationSaga) else None


def issued_key(saga_id: UUID, key: str) -> str:
    """The idempotency key of the command a saga issues under its own ``key``."""
    return f"{saga_id}:{key}"


def issued_command_id(saga_id: UUID, key: str) -> UUID:
    """The id of the command saga ``saga_id`` issues under its own ``key``."""
    return command_id_of(SAGA_CLIENT, issued_key(saga_id, key))
