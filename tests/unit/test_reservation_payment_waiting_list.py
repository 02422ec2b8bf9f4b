"""Reservation, Payment and WaitingList: their transitions and guards."""

from __future__ import annotations

import pytest

from domain.payment import Payment, PaymentStateError
from domain.reservation import Reservation, ReservationStateError
from domain.waiting_list import WaitingList


def reservation() -> Reservation:
    placed = Reservation(
        reservation_id="r1",
        show_id="s1",
        customer_id="c1",
        seats=["A1", "A2"],
        card_token="tok_approve",
        price_cents=1000,
    )
    placed.collect_events()
    return placed


def names(aggregate: Reservation | Payment | WaitingList) -> list[str]:
    return [type(e).__name__ for e in aggregate.collect_events()]


def test_a_reservation_costs_its_seats_at_the_show_s_price() -> None:
    assert reservation().amount_cents == 2000


@pytest.mark.parametrize(
    ("move", "event", "status"),
    [
        (lambda r: r.confirm(), "ReservationConfirmed", "confirmed"),
        (lambda r: r.reject("declined"), "ReservationRejected", "rejected"),
        (lambda r: r.waitlist(), "ReservationWaitlisted", "waitlisted"),
        (lambda r: r.expire(), "ReservationExpired", "expired"),
        (lambda r: r.cancel("by customer"), "ReservationCancelled", "cancelled"),
    ],
)
def test_a_pending_reservation_moves_once(move: object, event: str, status: str) -> None:
    placed = reservation()

    move(placed)  # type: ignore[operator]

    assert names(placed) == [event]
    assert placed.status == status
    if status != "cancelled":
        with pytest.raises(ReservationStateError):
            move(placed)  # type: ignore[operator]


def test_a_waitlisted_reservation_is_offered_back_to_pending() -> None:
    placed = reservation()
    placed.waitlist()
    placed.collect_events()

    placed.offer()

    assert names(placed) == ["ReservationOffered"]
    assert placed.status == "pending"
    with pytest.raises(ReservationStateError):
        placed.offer()


def test_a_confirmed_reservation_can_be_cancelled_but_not_expired() -> None:
    placed = reservation()
    placed.confirm()

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
    with pytest.raises(PaymentStateError):
        captured.capture("ch_2")
    with pytest.raises(PaymentStateError):
        declined.refund()


def test_the_waiting_list_offers_the_first_in_line_whose_seats_are_free() -> None:
    waiting = WaitingList(show_id="s1")
    waiting.join("r1", ["A1", "A2"])
    waiting.join("r2", ["A3"])
    waiting.join("r1", ["A1", "A2"])

    assert waiting.reservation_ids == ["r1", "r2"]
    assert waiting.first_fitting(["A3"]) == "r2"
    assert waiting.first_fitting(["A1", "A2", "A3"]) == "r1"
    assert waiting.first_fitting(["A1"]) is None

    waiting.leave("r1")
    waiting.leave("r9")
    assert waiting.reservation_ids == ["r2"]
