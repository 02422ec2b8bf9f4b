"""An in-process world for reservation stories: pipeline and saga runner, run in order.

``World.settle()`` plays relay, worker and saga runner: it runs each command as soon
as it is accepted (retries at once) and hands every event to the saga runner, until
nothing new happens. Time is the test's to move, for deadlines.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from application.catalog import build_registry
from application.command import Command
from application.pipeline import BoxofficeApplication, CommandPipeline, Submission
from application.ports import Services
from application.retry import RetryPolicy
from application.sagas import SagaRunner
from domain.payment import Payment
from domain.reservation import Reservation
from domain.reservation_saga import ReservationSaga
from domain.show import Show
from infrastructure.payment_gateway import FakePaymentGateway, InMemoryLedger

DEADLINE = timedelta(seconds=30)


class World:
    """The service with every asynchronous hop run in order, in this process."""

    def __init__(self, app: BoxofficeApplication) -> None:
        self.app = app
        self.ledger = InMemoryLedger()
        self.now = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
        services = Services(FakePaymentGateway(self.ledger, slow_seconds=0), DEADLINE)
        self.pipeline = CommandPipeline(
            app, build_registry(), RetryPolicy(max_attempts=3, base_delay=0), services
        )
        self.runner = SagaRunner(
            view=None,  # type: ignore[arg-type]  # the world tracks its own position
            app=app,
            pipeline=self.pipeline,
            payment_deadline=DEADLINE,
            due=self._due,
            clock=lambda: self.now,
        )
        self.position = app.recorder.max_notification_id() or 0
        self.held: list[tuple[UUID, int]] = []
        self.hold_types: set[str] = set()

    def submit(self, command_type: str, **payload: Any) -> UUID:
        spec = self.pipeline.registry.get(command_type)
        submission = Submission(spec, spec.payload.model_validate(payload), "customer")
        return self.pipeline.accept(submission).command.id

    def settle(self) -> None:
        """Deliver everything due until nothing new happens."""
        while True:
            notifications = self.app.recorder.select_notifications(
                start=self.position, limit=100, inclusive_of_start=False
            )
            if not notifications:
                return
            for notification in notifications:
                self.position = notification.id
                event = self.app.mapper.to_domain_event(notification)
                self._deliver(event)
                self.runner.route(event)

    def release_held(self) -> None:
        """Run the commands held back (a slow gateway's answer arriving)."""
        held, self.held = self.held, []
        for command_id, attempt in held:
            self.pipeline.execute(command_id, attempt, "worker")
        self.settle()

    def pass_time(self, delta: timedelta) -> None:
        self.now += delta
        self.runner.fire_deadlines()
        self.settle()

    def get(self, cls: type[Any], aggregate_id: UUID) -> Any:
        return self.app.repository.get(aggregate_id)

    def reservation(self, reservation_id: str) -> Reservation:
        found: Reservation = self.get(Reservation, Reservation.create_id(reservation_id))
        return found

    def payment(self, reservation_id: str) -> Payment:
        found: Payment = self.get(Payment, Payment.create_id(reservation_id))
        return found

    def show(self, show_id: str = "s1") -> Show:
        found: Show = self.get(Show, Show.create_id(show_id))
        return found

    def saga(self, reservation_id: str) -> ReservationSaga:
        found: ReservationSaga = self.get(
            ReservationSaga, ReservationSaga.create_id(reservation_id)
        )
        return found

    def commands(self) -> list[Command]:
        ids = {
            UUID(str(n.originator_id))
            for n in self.app.recorder.select_notifications(start=0, limit=10_000)
            if n.topic.endswith("CommandAccepted")
        }
        return [self.app.repository.get(i) for i in ids]

    def _deliver(self, event: Any) -> None:
        name = type(event).__name__
        if name not in ("CommandAccepted", "CommandRetryScheduled", "CommandRedriven"):
            return
        command: Command = self.app.repository.get(event.originator_id)
        attempt = command.attempt + 1
        if command.command_type in self.hold_types and name == "CommandAccepted":
            self.held.append((command.id, attempt))
            return
        self.pipeline.execute(command.id, attempt, "worker")

    def _due(self, now: datetime) -> list[str]:
        sagas: list[ReservationSaga] = [
            self.app.repository.get(c.correlation_id)
            for c in self.commands()
            if c.command_type == "PlaceReservation"
        ]
        return [
            s.reservation_id
            for s in sagas
            if s.state == "charging" and s.deadline_at is not None and s.deadline_at <= now
        ]
