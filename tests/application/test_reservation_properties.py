"""Random interleavings of reservations and cancellations on one show keep the invariants.

- no seat is held or sold twice, and every held or sold seat belongs to a reservation
  in the matching status;
- every confirmed reservation has exactly one captured payment;
- every reservation whose seats were released after payment has its payment refunded,
  and no reservation that is not confirmed keeps a captured payment.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.pipeline import BoxofficeApplication
from domain.payment import Payment
from tests.support.world import World

SEATS = ["A1", "A2", "A3", "A4"]
RESERVATIONS = [f"r{i}" for i in range(6)]

place = st.tuples(
    st.just("place"),
    st.sampled_from(RESERVATIONS),
    st.lists(st.sampled_from(SEATS), min_size=1, max_size=2, unique=True),
    st.sampled_from(["tok_approve", "tok_decline", "tok_flaky"]),
)
cancel = st.tuples(st.just("cancel"), st.sampled_from(RESERVATIONS))
settle = st.tuples(st.just("settle"))
operations = st.lists(st.one_of(place, place, cancel, settle), min_size=1, max_size=14)


def new_world() -> World:
    world = World(BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}))
    world.submit(
        "CreateShow",
        show_id="s1",
        title="Hamlet",
        starts_at="2027-01-01T20:00:00Z",
        seats=SEATS,
        price_cents=1000,
    )
    world.settle()
    return world


def payment_of(world: World, reservation_id: str) -> Payment | None:
    try:
        return world.payment(reservation_id)
    except Exception:  # noqa: BLE001 - no payment was ever requested
        return None


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(operations)
def test_random_reservations_and_cancels_keep_the_invariants(ops: list[Any]) -> None:
    world = new_world()
    placed: set[str] = set()
    for op in ops:
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
        elif op[0] == "settle":
            world.settle()
    world.settle()

    show = world.show()
    reservations = {r: world.reservation(r) for r in placed}
    # No seat twice, and every taken seat matches its reservation's status.
    assert not set(show.held) & set(show.sold)
    for seat, owner in show.sold.items():
        assert reservations[owner].status == "confirmed", (seat, owner)
        assert seat in reservations[owner].seats
    for seat, holder in show.held.items():
        assert reservations[holder].status == "pending", (seat, holder)
    for reservation_id, reservation in reservations.items():
        payment = payment_of(world, reservation_id)
        if reservation.status == "confirmed":
            assert payment is not None
            assert payment.status == "captured"
            assert sorted(s for s, o in show.sold.items() if o == reservation_id) == sorted(
                reservation.seats
            )
        elif payment is not None:
            assert payment.status != "captured", (reservation_id, reservation.status)
        if reservation.status == "cancelled" and payment is not None and payment.reference:
            assert payment.status == "refunded"
    # The gateway charged each payment at most once.
    approved = [e for e in world.ledger.entries.values() if e.result and e.result.approved]
    captured = [
        r for r in placed if (p := payment_of(world, r)) is not None and p.reference is not None
    ]
    assert len(approved) == len(captured)
