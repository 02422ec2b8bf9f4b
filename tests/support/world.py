"""An in-process world for reservation stories: pipeline and saga runner, run in order.

``World.settle()`` plays relay, worker and saga runner: it runs each command as soon
as it is accepted (retries at once) and hands every event to the saga runner, until
nothing new happens. Time is the test's to move, for deadlines.

Races are the test's to force: commands of ``hold_types`` are held back when accepted,
and ``World.paused(...)`` runs a held command up to the save of its outcome (loaded,
decided, gateway called) and keeps it there while the test runs others.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from application.command import Command
from application.event_log import BoxofficeApplication
from application.pipeline import CommandPipeline
from application.ports import Services
from application.retry import RetryPolicy
from application.saga_runner import ApplicationStore, SagaRunner
from application.segment import Segment
from application.slices import build_catalog
from application.unit_of_work import find_aggregate
from domain.payment import Payment
from domain.reservation import Reservation
from domain.reservation_saga import ReservationSaga
from domain.show import Show
from infrastructure.payment_gateway import FakePaymentGateway, InMemoryLedger
from tests.support.submit import submit

DEADLINE = timedelta(seconds=30)


class World:
    """The service with every asynchronous hop run in order, in this process."""

    def __init__(
        self, app: BoxofficeApplication, modules: Sequence[str] = (), saga_segments: int = 1
    ) -> None:
        self.app = app
        self.ledger = InMemoryLedger()
        # The world's clock runs ahead of the real one by the time passed: never behind
        # the events' own timestamps, like a saga runner's.
        self.ahead = timedelta(0)
        self.services = services = Services(
            FakePaymentGateway(self.ledger, slow_seconds=0), DEADLINE
        )
        self.pipeline = CommandPipeline(
            app, build_catalog(modules), RetryPolicy(max_attempts=3, base_delay=0), services
        )
        # The saga runner, or its segments: each is handed every event, as each
        # segment's process follows the whole log.
        self.runners = [
            SagaRunner(
                view=None,  # the world tracks its own position
                store=ApplicationStore(app),
                pipeline=self.pipeline,
                slices=self.pipeline.catalog.sagas,
                due=self._due,
                clock=lambda: self.now,
                segment=segment,
            )
            for segment in Segment.all(saga_segments)
        ]
        self.position = app.recorder.max_notification_id() or 0
        self.held: list[tuple[UUID, int]] = []
        self.hold_types: set[str] = set()
        self.hold_retries = False  # hold the retries of hold_types too, not only their first run

    def create_show(self, seats: list[str], price_cents: int, show_id: str = "s1") -> None:
        """Schedule a show and settle."""
        self.submit(
            "CreateShow",
            show_id=show_id,
            title="Hamlet",
            starts_at="2027-01-01T20:00:00Z",
            seats=seats,
            price_cents=price_cents,
        )
        self.settle()

    def place(
        self, reservation_id: str, seats: list[str], card: str = "tok_approve", show_id: str = "s1"
    ) -> None:
        """A customer places a reservation; settle."""
        self.submit(
            "PlaceReservation",
            reservation_id=reservation_id,
            show_id=show_id,
            customer_id=f"customer-{reservation_id}",
            seats=seats,
            card_token=card,
        )
        self.settle()

    def submit(self, command_type: str, **payload: Any) -> UUID:
        return submit(self.pipeline, command_type, submitted_by="customer", **payload).command.id

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
                self.route(event)

    def route(self, event: Any) -> None:
        """Hand ``event`` to the saga runner (each of its segments)."""
        for runner in self.runners:
            runner.route(event)

    def fire_deadlines(self) -> None:
        """Let the saga runner (each of its segments) fire the deadlines passed."""
        for runner in self.runners:
            runner.fire_deadlines()

    def release_held(self) -> None:
        """Run the commands held back (a slow gateway's answer arriving)."""
        held, self.held = self.held, []
        for command_id, attempt in held:
            self.pipeline.execute(command_id, attempt, "worker")
        self.settle()

    def take_held(self, command_type: str, reservation_id: str | None = None) -> tuple[UUID, int]:
        """The first held command of ``command_type`` (for ``reservation_id``), no longer held."""
        for held in self.held:
            command: Command = self.app.repository.get(held[0])
            if command.command_type == command_type and reservation_id in (
                None,
                command.payload.get("reservation_id"),
            ):
                self.held.remove(held)
                return held
        raise AssertionError(f"no {command_type} is held")

    def execute(self, held: tuple[UUID, int]) -> None:
        """Run one held command now, to its end."""
        self.pipeline.execute(held[0], held[1], "worker-b")

    @contextmanager
    def paused(self, held: tuple[UUID, int]) -> Iterator[None]:
        """Run ``held`` in another thread up to the save of its outcome; on leaving, let
        it save (a conflict there schedules a retry, as on a real worker)."""
        command_id, attempt = held
        arrived, go = threading.Event(), threading.Event()
        original = self.app.save
        errors: list[BaseException] = []

        def save(*objects: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is thread and any(
                isinstance(o, Command) and o.id == command_id and o.status == "succeeded"
                for o in objects
            ):
                arrived.set()
                go.wait()
            return original(*objects, **kwargs)

        def run() -> None:
            try:
                self.pipeline.execute(command_id, attempt, "worker-a")
            except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
                errors.append(error)
            finally:
                arrived.set()

        thread = threading.Thread(target=run, name=f"paused-{command_id}")
        self.app.save = save  # type: ignore[method-assign]
        try:
            thread.start()
            arrived.wait(10)
            yield
        finally:
            go.set()
            thread.join(10)
            self.app.save = original  # type: ignore[method-assign]
        if errors:
            raise errors[0]

    @property
    def now(self) -> datetime:
        return datetime.now(UTC) + self.ahead

    def pass_time(self, delta: timedelta) -> None:
        self.ahead += delta
        self.fire_deadlines()
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
        first_run = name == "CommandAccepted"
        if command.command_type in self.hold_types and (first_run or self.hold_retries):
            self.held.append((command.id, attempt))
            return
        self.pipeline.execute(command.id, attempt, "worker")

    def _due(self, now: datetime) -> list[UUID]:
        found = [
            find_aggregate(self.app, c.correlation_id)
            for c in self.commands()
            if c.command_type == "PlaceReservation"
        ]
        sagas = [s for s in found if isinstance(s, ReservationSaga)]
        return [
            s.id
            for s in sagas
            if s.state == "charging" and s.deadline_at is not None and s.deadline_at <= now
        ]
