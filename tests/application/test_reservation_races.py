"""Every pair of commands that touch one reservation or one show, raced in every order.

Each scenario brings the world to the moment two commands are both due, then runs them
one after the other both ways, and with each one paused between its loads and its save
while the other runs to the end (both load, one saves, the other's save conflicts and
is retried from fresh loads). Whatever the order, the invariants of seats and money
hold once everything has settled. The rules that decide each pair are in
docs/consistency.md.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from application.event_log import BoxofficeApplication
from application.unit_of_work import find_aggregate
from domain.reservation import Reservation
from tests.support.invariants import assert_invariants
from tests.support.world import DEADLINE, World

Held = tuple[Any, int]
Scenario = Callable[[World], tuple[Held, Held]]


def cancel(world: World, reservation_id: str) -> None:
    world.submit("CancelReservation", reservation_id=reservation_id)
    world.settle()


def step_against_cancel(step: str, card: str = "tok_approve") -> Scenario:
    """The saga's ``step`` for r1 and the customer's cancel of r1, both due."""

    def scenario(world: World) -> tuple[Held, Held]:
        world.hold_types = {step, "CancelReservation"}
        world.place("r1", ["A1", "A2"], card)
        if step == "ExpireReservation":
            world.pass_time(DEADLINE)
        cancel(world, "r1")
        return world.take_held(step), world.take_held("CancelReservation")

    return scenario


def charge_against_expire(world: World) -> tuple[Held, Held]:
    world.hold_types = {"ChargePayment", "ExpireReservation"}
    world.place("r1", ["A1"], "tok_slow")
    world.pass_time(DEADLINE)
    return world.take_held("ChargePayment"), world.take_held("ExpireReservation")


def join_against_release(release: str) -> Scenario:
    """r2 reserves the seat that r1 holds while r1's ``release`` frees it."""

    def scenario(world: World) -> tuple[Held, Held]:
        if release == "CancelReservation":
            world.place("r1", ["A1"])  # confirmed
        else:
            world.hold_types = {release}
            world.place(
                "r1",
                ["A1"],
                "tok_outage" if release == "ExpireReservation" else "tok_decline",
            )
            if release == "ExpireReservation":
                world.pass_time(DEADLINE)
        world.hold_types = {"ReserveSeats", release}
        world.place("r2", ["A1", "A2"])
        if release == "CancelReservation":
            cancel(world, "r1")
        return world.take_held("ReserveSeats", "r2"), world.take_held(release, "r1")

    return scenario


def reserve_against_reserve(world: World) -> tuple[Held, Held]:
    world.hold_types = {"ReserveSeats"}
    world.place("r1", ["A1", "A2"])
    world.place("r2", ["A2", "A3"])
    return world.take_held("ReserveSeats", "r1"), world.take_held("ReserveSeats", "r2")


def against_show_cancel(step: str) -> Scenario:
    """r1's ``step`` while the show is cancelled."""

    def scenario(world: World) -> tuple[Held, Held]:
        world.hold_types = {step, "CancelShow"}
        world.place("r1", ["A1"])
        world.submit("CancelShow", show_id="s1")
        world.settle()
        return world.take_held(step), world.take_held("CancelShow")

    return scenario


def offer_against_waiter_cancel(world: World) -> tuple[Held, Held]:
    world.place("r1", ["A1"])  # confirmed
    world.place("r2", ["A1"])  # waits for A1
    world.hold_types = {"CancelReservation"}
    cancel(world, "r1")  # frees A1: it is offered to r2
    cancel(world, "r2")
    return world.take_held("CancelReservation", "r1"), world.take_held("CancelReservation", "r2")


def cancel_against_cancel(world: World) -> tuple[Held, Held]:
    world.hold_types = {"CancelReservation"}
    world.place("r1", ["A1"])
    cancel(world, "r1")
    cancel(world, "r1")
    return world.take_held("CancelReservation"), world.take_held("CancelReservation")


SCENARIOS: dict[str, Scenario] = {
    "reserve-vs-cancel": step_against_cancel("ReserveSeats"),
    "charge-vs-cancel": step_against_cancel("ChargePayment"),
    "confirm-vs-cancel": step_against_cancel("ConfirmReservation"),
    "reject-vs-cancel": step_against_cancel("RejectReservation", "tok_decline"),
    "expire-vs-cancel": step_against_cancel("ExpireReservation", "tok_outage"),
    "charge-vs-expire": charge_against_expire,
    "join-vs-cancel-release": join_against_release("CancelReservation"),
    "join-vs-reject-release": join_against_release("RejectReservation"),
    "join-vs-expire-release": join_against_release("ExpireReservation"),
    "reserve-vs-reserve": reserve_against_reserve,
    "place-vs-cancel-show": against_show_cancel("PlaceReservation"),
    "reserve-vs-cancel-show": against_show_cancel("ReserveSeats"),
    "confirm-vs-cancel-show": against_show_cancel("ConfirmReservation"),
    "offer-vs-waiter-cancel": offer_against_waiter_cancel,
    "cancel-vs-cancel": cancel_against_cancel,
}


def run_in_order(world: World, first: Held, second: Held, order: str) -> None:
    if order == "first-then-second":
        world.execute(first)
        world.execute(second)
    elif order == "second-then-first":
        world.execute(second)
        world.execute(first)
    elif order == "first-paused":
        with world.paused(first):
            world.execute(second)
    else:
        with world.paused(second):
            world.execute(first)


@pytest.mark.parametrize(
    "order", ["first-then-second", "second-then-first", "first-paused", "second-paused"]
)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_racing_commands_keep_seats_and_money_right(name: str, order: str) -> None:
    world = World(BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}))
    world.create_show(["A1", "A2", "A3", "A4"], price_cents=1000)
    first, second = SCENARIOS[name](world)

    run_in_order(world, first, second, order)
    world.hold_types = set()
    world.release_held()
    world.pass_time(DEADLINE + timedelta(seconds=1))

    asked = {
        c.payload["reservation_id"]
        for c in world.commands()
        if c.command_type == "PlaceReservation"
    }
    placed = {r for r in asked if find_aggregate(world.app, Reservation.create_id(r)) is not None}
    assert_invariants(world, placed)
