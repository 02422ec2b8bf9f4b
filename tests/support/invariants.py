"""The invariants of seats and money that every interleaving must keep.

Checked on a settled world (nothing left to run):
- a seat is held only for a pending reservation and sold only to a confirmed one, and
  a confirmed reservation owns exactly its seats;
- a confirmed reservation was charged once and keeps its payment; every charge the
  gateway took for a reservation that is not confirmed was refunded;
- the waiting list is exactly the waitlisted reservations, and nobody on it waits for
  seats that are all free;
- every saga has ended or waits on the waiting list.
"""

from __future__ import annotations

from domain.payment import Payment
from domain.reservation_saga import TERMINAL
from tests.support.world import World


def assert_invariants(world: World, reservation_ids: set[str], show_id: str = "s1") -> None:
    """Fail with the broken invariant, if any."""
    show = world.show(show_id)
    reservations = {r: world.reservation(r) for r in reservation_ids}
    assert not set(show.held) & set(show.sold)
    for seat, holder in show.held.items():
        assert reservations[holder].status == "pending", (seat, holder)
    for seat, owner in show.sold.items():
        assert reservations[owner].status == "confirmed", (seat, owner)
    for reservation_id, reservation in reservations.items():
        entry = world.ledger.entries.get(Payment.idempotency_key_of(reservation_id))
        charged = entry is not None and entry.result is not None and entry.result.approved
        if reservation.status == "confirmed":
            owned = sorted(s for s, o in show.sold.items() if o == reservation_id)
            assert owned == sorted(reservation.seats), reservation_id
            assert charged, reservation_id
            assert entry is not None
            assert not entry.refunded, reservation_id
            assert world.payment(reservation_id).status == "captured"
        elif charged:
            assert entry is not None
            assert entry.refunded, (reservation_id, reservation.status)
            assert reservation.payment in (None, "refunded"), reservation_id
    waitlisted = {r for r, res in reservations.items() if res.status == "waitlisted"}
    assert set(show.waiting_ids) == waitlisted
    assert len(show.waiting_ids) == len(waitlisted)
    if not show.cancelled:
        free = set(show.available)
        for waiting in show.waiting:
            assert not set(waiting["seats"]) <= free, ("waits for free seats", waiting)
    for reservation_id in reservation_ids:
        state = world.saga(reservation_id).state
        assert state in TERMINAL or state == "waitlisted", (reservation_id, state)
