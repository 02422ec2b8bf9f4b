"""Reservation and Payment: their transitions and guards."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from domain.payment import Payment, PaymentStateError
from domain.reservation import Reservation, ReservationStateError
from tests.support.given import given


def reservation(*steps: Callable[[Reservation], None]) -> Reservation:
    """Given a placed reservation taken through ``steps``."""
    return given(
        lambda: Reservation(
            reservation_id="r1",
            show_id="s1",
            customer_id="c1",
            seats=["A1", "A2"],
            card_token="tok_approve",
            price_cents=1000,
        ),
        *steps,
    ).aggregate


def held(r: Reservation) -> None:
    r.hold_seats()


def paid(r: Reservation) -> None:
    r.hold_seats()
    r.paid()


def names(aggregate: Reservation | Payment) -> list[str]:
    return [type(e).__name__ for e in aggregate.collect_events()]


def test_a_reservation_costs_its_seats_at_the_show_s_price() -> None:
    assert reservation().amount_cents == 2000


@pytest.mark.parametrize(
    ("given", "move", "event", "status"),
    [
        ([paid], lambda r: r.confirm(), "ReservationConfirmed", "confirmed"),
        ([held], lambda r: r.reject("declined"), "ReservationRejected", "rejected"),
        ([], lambda r: r.waitlist(), "ReservationWaitlisted", "waitlisted"),
        ([held], lambda r: r.expire(), "ReservationExpired", "expired"),
        ([held], lambda r: r.cancel("by customer"), "ReservationCancelled", "cancelled"),
    ],
)
def test_a_pending_reservation_moves_once(
    given: list[Callable[[Reservation], None]], move: object, event: str, status: str
) -> None:
    placed = reservation(*given)

    move(placed)  # type: ignore[operator]

    assert names(placed) == [event]
    assert placed.status == status
    assert placed.has_seats == (status == "confirmed")
    if status != "cancelled":
        with pytest.raises(ReservationStateError):
            move(placed)  # type: ignore[operator]


def test_seats_are_held_once_and_only_a_reservation_holding_seats_is_chargeable() -> None:
    placed = reservation()
    with pytest.raises(ReservationStateError):
        placed.paid()

    placed.hold_seats()

    assert names(placed) == ["ReservationSeatsHeld"]
    assert placed.is_chargeable
    assert not reservation().is_chargeable
    with pytest.raises(ReservationStateError):
        placed.hold_seats()


def test_a_payment_is_recorded_once_and_only_a_captured_one_is_refunded() -> None:
    captured = reservation(held)
    declined = reservation(held)

    captured.paid()
    declined.payment_declined("card declined")

    assert names(captured) == ["ReservationPaid"]
    assert not captured.is_chargeable
    with pytest.raises(ReservationStateError):
        captured.paid()
    with pytest.raises(ReservationStateError):
        declined.refunded()
    assert declined.reason == "card declined"
    captured.refunded()
    assert captured.payment == "refunded"


def test_an_unpaid_reservation_cannot_be_confirmed() -> None:
    with pytest.raises(ReservationStateError, match="not paid"):
        reservation(held).confirm()


def test_an_ended_reservation_cannot_be_paid() -> None:
    cancelled = reservation(held, lambda r: r.cancel("by customer"))

    assert not cancelled.is_chargeable
    with pytest.raises(ReservationStateError):
        cancelled.paid()


def test_a_waitlisted_reservation_is_offered_back_to_pending_with_its_seats_held() -> None:
    placed = reservation(lambda r: r.waitlist())

    placed.offer()

    assert names(placed) == ["ReservationOffered"]
    assert placed.status == "pending"
    assert placed.is_chargeable
    with pytest.raises(ReservationStateError):
        placed.offer()


def test_a_confirmed_reservation_can_be_cancelled_but_not_expired() -> None:
    placed = reservation(paid, lambda r: r.confirm())

    placed.cancel("by customer")

    assert placed.status == "cancelled"
    with pytest.raises(ReservationStateError):
        placed.expire()


def test_a_payment_is_captured_or_declined_once_and_only_a_capture_is_refunded() -> None:
    captured = Payment(reservation_id="r1", amount_cents=2000, card_token="tok_approve")
    declined = Payment(reservation_id="r2", amount_cents=2000, card_token="tok_decline")

    captured.capture("ch_1")
    captured.refund()
    declined.decline("insufficient funds")

    assert names(captured) == ["PaymentRequested", "PaymentCaptured", "PaymentRefunded"]
    assert captured.idempotency_key == f"charge-{captured.id}"
    assert captured.idempotency_key == Payment.idempotency_key_of("r1")
    with pytest.raises(PaymentStateError):
        captured.capture("ch_2")
    with pytest.raises(PaymentStateError):
        declined.refund()
