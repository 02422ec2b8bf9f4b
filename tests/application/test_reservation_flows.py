"""Every reservation flow, told as a story: the pipeline and the saga runner in-process."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any
from unittest.mock import patch

import pytest

from application.command import Command
from application.event_log import BoxofficeApplication
from domain.payment import Payment
from tests.support.world import DEADLINE, World


@pytest.fixture(params=[1, 2], ids=["one-runner", "two-runner-segments"])
def world(app: BoxofficeApplication, request: pytest.FixtureRequest) -> World:
    # Every story holds with the saga runner split in two segments (SAGA_SEGMENTS=2):
    # each event decides its saga in one of them, and the deadlines in one of them.
    world = World(app, saga_segments=request.param)
    world.create_show(["A1", "A2", "A3", "A4"], price_cents=1500)
    return world


def test_an_approved_payment_confirms_the_reservation_and_sells_the_seats(world: World) -> None:
    world.place("r1", ["A1", "A2"], "tok_approve")

    assert world.reservation("r1").status == "confirmed"
    assert world.show().sold == {"A1": "r1", "A2": "r1"}
    assert world.payment("r1").status == "captured"
    assert world.payment("r1").amount_cents == 3000
    assert world.saga("r1").state == "confirmed"
    # Every step went through the pipeline, correlated to the saga, caused by an event.
    steps = [c for c in world.commands() if c.correlation_id == world.saga("r1").id]
    assert {c.command_type for c in steps} == {
        "PlaceReservation",
        "ReserveSeats",
        "ChargePayment",
        "ConfirmReservation",
    }
    assert all(c.status == "succeeded" for c in steps)
    assert all(c.causation_id for c in steps if c.command_type != "PlaceReservation")


def test_a_declined_payment_releases_the_seats_and_rejects(world: World) -> None:
    world.place("r1", ["A1"], "tok_decline")

    reservation = world.reservation("r1")
    assert reservation.status == "rejected"
    assert reservation.reason == "card declined"
    assert world.show().available == ["A1", "A2", "A3", "A4"]
    assert world.payment("r1").status == "declined"
    assert world.saga("r1").state == "rejected"


def test_a_flaky_gateway_is_retried_and_charges_once(world: World) -> None:
    world.place("r1", ["A1"], "tok_flaky")

    assert world.reservation("r1").status == "confirmed"
    charge = next(c for c in world.commands() if c.command_type == "ChargePayment")
    assert [a["outcome"] for a in charge.attempts] == [
        "retry_scheduled",
        "retry_scheduled",
        "succeeded",
    ]
    entry = world.ledger.entries[world.payment("r1").idempotency_key]
    assert entry.calls == 3
    assert entry.result is not None
    assert entry.result.approved
    assert len(world.ledger.entries) == 1


def test_an_outage_dead_letters_the_charge_and_the_deadline_expires_the_reservation(
    world: World,
) -> None:
    world.place("r1", ["A1"], "tok_outage")
    charge = next(c for c in world.commands() if c.command_type == "ChargePayment")
    assert charge.status == "dead_lettered"
    assert world.reservation("r1").status == "pending"

    world.pass_time(DEADLINE - timedelta(seconds=1))
    assert world.reservation("r1").status == "pending"
    world.pass_time(timedelta(seconds=1))

    assert world.reservation("r1").status == "expired"
    assert world.show().available == ["A1", "A2", "A3", "A4"]
    assert world.saga("r1").state == "expired"


def test_a_payment_taken_after_the_deadline_is_refunded(world: World) -> None:
    world.hold_types = {"ChargePayment"}
    world.place("r1", ["A1"], "tok_slow")
    charge = world.take_held("ChargePayment")

    with world.paused(charge):
        # The slow gateway took the money; before its answer is recorded the deadline
        # passes and the reservation expires.
        world.pass_time(DEADLINE)
        assert world.reservation("r1").status == "expired"
    world.settle()

    entry = world.ledger.entries[Payment.idempotency_key_of("r1")]
    assert entry.result is not None
    assert entry.result.approved
    assert entry.refunded
    assert world.reservation("r1").status == "expired"
    assert world.show().available == ["A1", "A2", "A3", "A4"]
    charge_command: Command = world.app.repository.get(charge[0])
    assert charge_command.status == "failed"
    assert charge_command.error is not None
    assert "not charged" in charge_command.error["message"]


def test_taken_seats_waitlist_and_freed_seats_promote_the_first_in_line(world: World) -> None:
    world.place("r1", ["A1", "A2"], "tok_approve")
    world.place("r2", ["A2"], "tok_approve")
    world.place("r3", ["A1"], "tok_approve")
    assert world.reservation("r2").status == "waitlisted"
    assert world.reservation("r3").status == "waitlisted"
    assert world.show().waiting_ids == ["r2", "r3"]

    world.submit("CancelReservation", reservation_id="r1")
    world.settle()

    assert world.reservation("r1").status == "cancelled"
    assert world.payment("r1").status == "refunded"
    assert world.reservation("r2").status == "confirmed"
    assert world.reservation("r3").status == "confirmed"
    assert world.show().sold == {"A1": "r3", "A2": "r2"}
    assert world.show().waiting_ids == []
    assert world.saga("r2").run == 2


def test_cancelling_the_show_cancels_every_reservation_with_refunds(world: World) -> None:
    world.place("r1", ["A1"], "tok_approve")
    world.place("r2", ["A2"], "tok_approve")
    world.place("r3", ["A1"], "tok_approve")  # waitlisted

    world.submit("CancelShow", show_id="s1")
    world.settle()

    for reservation_id in ("r1", "r2", "r3"):
        assert world.reservation(reservation_id).status == "cancelled"
        assert world.saga(reservation_id).state == "cancelled"
    assert world.payment("r1").status == "refunded"
    assert world.payment("r2").status == "refunded"
    assert world.show().status == "cancelled"
    assert world.show().available == ["A1", "A2", "A3", "A4"]


def test_a_reservation_for_a_missing_show_or_unknown_seat_fails(world: World) -> None:
    missing = world.submit(
        "PlaceReservation",
        reservation_id="r1",
        show_id="nope",
        customer_id="c",
        seats=["A1"],
        card_token="tok_approve",
    )
    unknown = world.submit(
        "PlaceReservation",
        reservation_id="r2",
        show_id="s1",
        customer_id="c",
        seats=["Z9"],
        card_token="tok_approve",
    )
    world.settle()

    failed = {c.id: c.error or {} for c in world.commands() if c.status == "failed"}
    assert failed[missing]["category"] == "not_found"
    assert failed[unknown]["type"] == "UnknownSeatError"


def test_a_redelivered_event_changes_no_saga(world: World) -> None:
    world.place("r1", ["A1"], "tok_approve")
    events = world.app.recorder.select_notifications(start=0, limit=10_000)
    head = world.app.recorder.max_notification_id()

    for notification in events:
        world.route(world.app.mapper.to_domain_event(notification))

    assert world.app.recorder.max_notification_id() == head


def test_losing_version_conflicts_does_not_spend_the_retry_budget(world: World) -> None:
    world.hold_types = {"CancelShow"}
    world.hold_retries = True
    world.submit("CancelShow", show_id="s1")
    world.settle()
    # Another writer changes the show between each attempt's loads and its save, more
    # times than the budget has attempts (3): each attempt loses a version conflict.
    for seat in ["A1", "A2", "A3", "A4"]:
        with world.paused(world.take_held("CancelShow")):
            world.place(f"r-{seat}", [seat])
        world.settle()

    world.hold_types = set()
    world.release_held()

    cancel = next(c for c in world.commands() if c.command_type == "CancelShow")
    assert cancel.status == "succeeded"
    assert [a["error"]["category"] for a in cancel.attempts[:-1]] == ["version_conflict"] * 4
    assert world.show().cancelled


@pytest.mark.parametrize("ending", ["cancel", "expire"])
def test_money_a_lost_charge_took_goes_back_when_the_reservation_ends(
    world: World, ending: str
) -> None:
    # A charge reached the gateway and then lost its worker for good: its command was
    # dead-lettered, so the reservation never learnt that it was paid.
    world.hold_types = {"ChargePayment"}
    world.place("r1", ["A1"], "tok_approve")
    key = Payment.idempotency_key_of("r1")
    world.services.payment_gateway.charge(key, 1500, "tok_approve")
    assert world.ledger.entries[key].result is not None

    if ending == "cancel":
        world.submit("CancelReservation", reservation_id="r1")
        world.settle()
    else:
        world.ahead += DEADLINE + timedelta(seconds=1)
        world.fire_deadlines()
        world.settle()

    assert world.reservation("r1").status == ("cancelled" if ending == "cancel" else "expired")
    assert world.ledger.entries[key].refunded


def test_a_charge_that_outlives_its_takeover_gives_the_money_back(world: World) -> None:
    # Attempt 1 of the charge hangs in the gateway (its worker looks lost); the customer
    # cancels; the broker redelivers and attempt 2 finds the reservation cancelled and
    # fails "not charged". Only then does attempt 1's gateway call take the money.
    gateway = world.services.payment_gateway
    gate = threading.Event()
    in_gateway = threading.Event()
    charge = gateway.charge

    def slow_charge(key: str, amount_cents: int, card_token: str) -> Any:
        if not in_gateway.is_set():
            in_gateway.set()
            gate.wait(10)
        return charge(key, amount_cents, card_token)

    world.hold_types = {"ChargePayment"}
    world.place("r1", ["A1"], "tok_approve")
    command_id, attempt = world.take_held("ChargePayment", "r1")
    with patch.object(gateway, "charge", slow_charge):
        zombie = threading.Thread(
            target=world.pipeline.execute, args=(command_id, attempt, "zombie")
        )
        zombie.start()
        assert in_gateway.wait(5)
        world.submit("CancelReservation", reservation_id="r1")
        world.settle()
        world.pipeline.execute(command_id, attempt, "taker", redelivered=True)
        gate.set()
        zombie.join(10)

    key = Payment.idempotency_key_of("r1")
    assert world.reservation("r1").status == "cancelled"
    taken = world.ledger.entries[key]
    assert taken.result is not None
    assert taken.result.approved
    assert taken.refunded
