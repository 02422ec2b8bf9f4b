"""Every reservation flow end to end: PostgreSQL, RabbitMQ, worker, relay, projector, sagas."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.application import AggregateNotFoundError

from domain.payment import Payment
from domain.reservation import Reservation
from domain.show import Show
from tests.conftest import fresh_database
from tests.integration.conftest import Stack
from tests.support.processes import running, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

DEADLINE_SECONDS = 3


@pytest.fixture(scope="module")
def stack(
    server_database_url: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    log_dir: Path = tmp_path_factory.mktemp("sagas")
    settings = {
        "PAYMENT_DEADLINE_SECONDS": str(DEADLINE_SECONDS),
        "FAKE_GATEWAY_SLOW_SECONDS": str(DEADLINE_SECONDS + 3),
        "WORKER_CONCURRENCY": "3",
    }
    with fresh_database(server_database_url) as database_url:
        built = Stack(database_url, broker_url, f"sagas.{uuid.uuid4().hex[:8]}", log_dir)
        parts = [
            built.process(p, **settings) for p in ("relay", "worker", "projector", "saga-runner")
        ]
        with running(*parts):
            yield built
        built.container.close()


def new_show(stack: Stack, seats: tuple[str, ...] = ("A1", "A2", "A3")) -> str:
    show_id = f"s-{uuid.uuid4().hex[:8]}"
    acceptance = stack.submit(
        "CreateShow",
        show_id=show_id,
        title="Hamlet",
        starts_at="2027-01-01T20:00:00Z",
        seats=list(seats),
        price_cents=2500,
    )
    assert stack.outcome(acceptance.command.id).status == "succeeded"
    return show_id


def place(stack: Stack, show_id: str, seats: list[str], card: str) -> str:
    reservation_id = f"r-{uuid.uuid4().hex[:8]}"
    stack.submit(
        "PlaceReservation",
        reservation_id=reservation_id,
        show_id=show_id,
        customer_id="c1",
        seats=seats,
        card_token=card,
    )
    return reservation_id


def get(stack: Stack, aggregate_id: Any) -> Any:
    try:
        return stack.container.app.repository.get(aggregate_id)
    except AggregateNotFoundError:
        return None


def status(stack: Stack, reservation_id: str) -> str | None:
    found = get(stack, Reservation.create_id(reservation_id))
    return found.status if found is not None else None


def payment_status(stack: Stack, reservation_id: str) -> str | None:
    found = get(stack, Payment.create_id(reservation_id))
    return found.status if found is not None else None


def await_status(stack: Stack, reservation_id: str, expected: str, timeout: float = 30) -> None:
    try:
        wait_until(lambda: status(stack, reservation_id) == expected, timeout, expected)
    except AssertionError:
        with psycopg.connect(stack.database_url) as conn:
            stored = conn.execute(
                "SELECT topic FROM boxoffice_events WHERE originator_id = %s",
                (Reservation.create_id(reservation_id),),
            ).fetchall()
        raise AssertionError(
            f"{reservation_id} is {status(stack, reservation_id)}, not {expected}; stored: {stored}"
        ) from None


def test_approve_confirms(stack: Stack) -> None:
    show_id = new_show(stack)
    reservation_id = place(stack, show_id, ["A1", "A2"], "tok_approve")

    await_status(stack, reservation_id, "confirmed")
    show: Show = get(stack, Show.create_id(show_id))
    assert show.sold == {"A1": reservation_id, "A2": reservation_id}
    assert payment_status(stack, reservation_id) == "captured"


def test_decline_compensates(stack: Stack) -> None:
    show_id = new_show(stack)
    reservation_id = place(stack, show_id, ["A1"], "tok_decline")

    await_status(stack, reservation_id, "rejected")
    show: Show = get(stack, Show.create_id(show_id))
    assert show.available == ["A1", "A2", "A3"]


def test_flaky_then_approve_charges_once(stack: Stack) -> None:
    show_id = new_show(stack)
    reservation_id = place(stack, show_id, ["A1"], "tok_flaky")

    await_status(stack, reservation_id, "confirmed")
    payment: Payment = get(stack, Payment.create_id(reservation_id))
    with psycopg.connect(stack.database_url) as conn:
        ledger = conn.execute(
            "SELECT calls, approved FROM fake_gateway_charges WHERE key = %s",
            (payment.idempotency_key,),
        ).fetchall()
    assert ledger == [(3, True)]


def test_outage_dead_letters_and_the_deadline_expires(stack: Stack) -> None:
    show_id = new_show(stack)
    reservation_id = place(stack, show_id, ["A1"], "tok_outage")

    await_status(stack, reservation_id, "expired", timeout=DEADLINE_SECONDS + 30)
    show: Show = get(stack, Show.create_id(show_id))
    assert show.available == ["A1", "A2", "A3"]
    charges = stack.container.read_models.views["command_registry"].page(
        {"type": "ChargePayment"}, None, 500
    )
    mine = [c for c in charges[0] if c["links"]["resource"] == f"/reservations/{reservation_id}"]
    wait_until(
        lambda: stack.command(uuid.UUID(mine[0]["command_id"])).status == "dead_lettered",
        30,
        "the charge to be dead-lettered",
    )


def test_slow_payment_expires_then_is_refunded(stack: Stack) -> None:
    show_id = new_show(stack)
    reservation_id = place(stack, show_id, ["A1"], "tok_slow")

    await_status(stack, reservation_id, "expired", timeout=DEADLINE_SECONDS + 20)
    # The gateway took the money after the deadline; the charge's save then conflicted
    # with the expiry, and its retry gave the money back.
    wait_until(
        lambda: gateway_ledger(stack, reservation_id) == [(True, True)],
        30,
        "the late payment to be refunded",
    )
    assert status(stack, reservation_id) == "expired"


def gateway_ledger(stack: Stack, reservation_id: str) -> list[tuple[Any, ...]]:
    """(approved, refunded) of the reservation's charge in the fake gateway's ledger."""
    with psycopg.connect(stack.database_url) as conn:
        return conn.execute(
            "SELECT approved, refunded FROM fake_gateway_charges WHERE key = %s",
            (Payment.idempotency_key_of(reservation_id),),
        ).fetchall()


def test_waiting_list_promotion(stack: Stack) -> None:
    show_id = new_show(stack)
    first = place(stack, show_id, ["A1"], "tok_approve")
    await_status(stack, first, "confirmed")
    second = place(stack, show_id, ["A1"], "tok_approve")
    await_status(stack, second, "waitlisted")

    stack.submit("CancelReservation", reservation_id=first)

    await_status(stack, second, "confirmed")
    assert payment_status(stack, first) == "refunded"


def test_show_cancellation_cancels_and_refunds(stack: Stack) -> None:
    show_id = new_show(stack)
    confirmed = place(stack, show_id, ["A1"], "tok_approve")
    await_status(stack, confirmed, "confirmed")
    waiting = place(stack, show_id, ["A1"], "tok_approve")
    await_status(stack, waiting, "waitlisted")

    stack.submit("CancelShow", show_id=show_id)

    await_status(stack, confirmed, "cancelled")
    await_status(stack, waiting, "cancelled")
    wait_until(lambda: payment_status(stack, confirmed) == "refunded", 30, "the refund")
