"""The invariants of seats and money that every interleaving must keep.

Checked once nothing is left to run:
- a seat is held only for a pending reservation and sold only to a confirmed one, and
  a confirmed reservation owns exactly its seats;
- a confirmed reservation was charged once and keeps its payment; every charge the
  gateway took for a reservation that is not confirmed was refunded;
- the waiting list is exactly the waitlisted reservations, and nobody on it waits for
  seats that are all free;
- every saga has ended or waits on the waiting list.

:func:`violations` works on aggregates and the gateway's ledger from any store (the
chaos run reads them from PostgreSQL); :func:`assert_invariants` applies it to a world.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from domain.payment import Payment
from domain.reservation import Reservation
from domain.reservation_saga import TERMINAL, ReservationSaga
from domain.show import Show
from tests.support.world import World

# A charge in the gateway's ledger: (approved, refunded), by idempotency key.
Ledger = Mapping[str, tuple[bool, bool]]


def violations(
    shows: Iterable[Show],
    reservations: Mapping[str, Reservation],
    payments: Mapping[str, Payment],
    sagas: Mapping[str, ReservationSaga],
    ledger: Ledger,
) -> list[str]:
    """Every broken invariant, described; empty when the books balance."""
    found: list[str] = []
    for show in shows:
        found += _show_violations(show, reservations)
    for reservation_id, reservation in reservations.items():
        approved, refunded = ledger.get(Payment.idempotency_key_of(reservation_id), (False, False))
        payment = payments.get(reservation_id)
        if reservation.status == "confirmed":
            if not approved or refunded or payment is None or payment.status != "captured":
                found.append(f"{reservation_id} confirmed without a kept payment")
        elif approved and not refunded:
            found.append(f"{reservation_id} is {reservation.status} and its money was kept")
        elif reservation.payment not in (None, "refunded", "declined"):
            found.append(
                f"{reservation_id} is {reservation.status} with payment {reservation.payment}"
            )
        saga = sagas.get(reservation_id)
        if saga is None:
            found.append(f"{reservation_id} has no saga")
        elif saga.state not in TERMINAL and saga.state != "waitlisted":
            found.append(f"the saga of {reservation_id} is stuck {saga.state}")
    return found


def _show_violations(show: Show, reservations: Mapping[str, Reservation]) -> list[str]:
    found: list[str] = []
    if set(show.held) & set(show.sold):
        found.append(f"{show.show_id}: seats both held and sold")
    for seat, holder in show.held.items():
        if reservations[holder].status != "pending":
            found.append(f"{show.show_id} {seat} held for {holder}, {reservations[holder].status}")
    for seat, owner in show.sold.items():
        if reservations[owner].status != "confirmed":
            found.append(f"{show.show_id} {seat} sold to {owner}, {reservations[owner].status}")
    mine = {r: res for r, res in reservations.items() if res.show_id == show.show_id}
    for reservation_id, reservation in mine.items():
        if reservation.status == "confirmed":
            owned = sorted(s for s, o in show.sold.items() if o == reservation_id)
            if owned != sorted(reservation.seats):
                found.append(f"{reservation_id} confirmed but owns {owned}")
    waitlisted = {r for r, res in mine.items() if res.status == "waitlisted"}
    if sorted(show.waiting_ids) != sorted(waitlisted):
        found.append(f"{show.show_id}: waiting list {show.waiting_ids} != waitlisted {waitlisted}")
    if not show.cancelled:
        free = set(show.available)
        for waiting in show.waiting:
            if set(waiting["seats"]) <= free:
                found.append(f"{waiting['reservation_id']} waits for free seats {waiting['seats']}")
    return found


def assert_invariants(world: World, reservation_ids: set[str], show_id: str = "s1") -> None:
    """Fail with every broken invariant, if any."""
    reservations = {r: world.reservation(r) for r in reservation_ids}
    payments = {r: world.payment(r) for r, res in reservations.items() if res.payment is not None}
    ledger = {
        key: (bool(entry.result and entry.result.approved), entry.refunded)
        for key, entry in world.ledger.entries.items()
    }
    sagas = {r: world.saga(r) for r in reservation_ids}
    found = violations([world.show(show_id)], reservations, payments, sagas, ledger)
    assert not found, found
