"""Random interleavings of reservations, cancellations, saga steps and deadlines keep the
invariants of seats and money (``tests/support/invariants.py``).

Every command is held when accepted; hypothesis then picks which held command runs
next, which runs while another is paused between its loads and its save, when the
deadline passes and when customers place or cancel. At the end everything left runs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from application.event_log import BoxofficeApplication
from application.slices import build_catalog
from application.unit_of_work import find_aggregate
from domain.reservation import Reservation
from tests.support.invariants import assert_invariants
from tests.support.world import DEADLINE, World

SEATS = ["A1", "A2", "A3", "A4"]
RESERVATIONS = [f"r{i}" for i in range(5)]
EVERY_COMMAND = {spec.name for spec in build_catalog()}

place = st.tuples(
    st.just("place"),
    st.sampled_from(RESERVATIONS),
    st.lists(st.sampled_from(SEATS), min_size=1, max_size=2, unique=True),
    st.sampled_from(["tok_approve", "tok_decline", "tok_flaky", "tok_outage", "tok_slow"]),
)
cancel = st.tuples(st.just("cancel"), st.sampled_from(RESERVATIONS))
run = st.tuples(st.just("run"), st.integers(0, 20))
race = st.tuples(st.just("race"), st.integers(0, 20), st.integers(0, 20))
deadline = st.tuples(st.just("deadline"))
operations = st.lists(
    st.one_of(place, place, place, cancel, run, run, run, race, race, race, deadline),
    min_size=8,
    max_size=40,
)
# A cancelled show ends everything; it comes at most once, anywhere in the run.
scripts = st.tuples(operations, st.none() | st.integers(0, 40)).map(
    lambda t: t[0] if t[1] is None else [*t[0][: t[1]], ("cancel-show",), *t[0][t[1] :]]
)


def new_world() -> World:
    world = World(BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}))
    world.create_show(SEATS, price_cents=1000)
    world.hold_types = EVERY_COMMAND
    return world


def apply(world: World, op: tuple[Any, ...], placed: set[str]) -> None:
    if op[0] == "place" and op[1] not in placed:
        placed.add(op[1])
        world.submit(
            "PlaceReservation",
            reservation_id=op[1],
            show_id="s1",
            customer_id=f"c-{op[1]}",
            seats=op[2],
            card_token=op[3],
        )
    elif op[0] == "cancel" and op[1] in placed:
        world.submit("CancelReservation", reservation_id=op[1])
    elif op[0] == "cancel-show":
        world.submit("CancelShow", show_id="s1")
    elif op[0] == "deadline":
        world.pass_time(DEADLINE)
    elif op[0] == "run" and world.held:
        world.execute(world.held.pop(op[1] % len(world.held)))
    elif op[0] == "race" and len(world.held) >= 2:
        first = world.held.pop(op[1] % len(world.held))
        second = world.held.pop(op[2] % len(world.held))
        with world.paused(first):
            world.execute(second)
    world.settle()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(scripts)
def test_random_interleavings_keep_seats_and_money_right(ops: list[Any]) -> None:
    world = new_world()
    placed: set[str] = set()
    for op in ops:
        apply(world, op, placed)

    world.hold_types = set()
    world.release_held()
    world.pass_time(DEADLINE + timedelta(seconds=1))

    exists = {r for r in placed if find_aggregate(world.app, Reservation.create_id(r))}
    assert_invariants(world, exists)
    for reservation_id in sorted(exists):
        event(f"ended {world.reservation(reservation_id).status}")
