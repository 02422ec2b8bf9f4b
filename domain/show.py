"""The Show aggregate: a performance with a seat map and a price."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import ConflictError, RuleViolationError
from domain.ids import aggregate_id


class ShowCancelledError(ConflictError):
    """Raised when a command needs a scheduled show but the show was cancelled."""


class UnknownSeatError(RuleViolationError):
    """Raised when a command names a seat that is not on the show's seat map."""


class SeatNotHeldError(ConflictError):
    """Raised when seats are released or sold for a reservation that does not hold them."""


class ShowExistsError(ConflictError):
    """Raised when a show is created with an id that another show already has."""


class InvalidSeatMapError(RuleViolationError):
    """Raised when a show is created without seats, with repeated seats or a negative price."""


class Show(Aggregate):
    """A show: seats are held for a reservation, then released or sold; it can be cancelled.

    ``owner`` is the client that created it: only its commands may target it.
    """

    @staticmethod
    def create_id(show_id: str, **_: Any) -> UUID:
        """The aggregate id of the show the client calls ``show_id``."""
        return aggregate_id("show", show_id)

    @classmethod
    def schedule(
        cls,
        show_id: str,
        title: str,
        starts_at: str,
        seats: list[str],
        price_cents: int,
        owner: str | None = None,
    ) -> Show:
        """Create a show for ``owner`` (the client that may change it); the seat map must
        be non-empty and without repeats."""
        if not seats:
            raise InvalidSeatMapError("a show needs at least one seat")
        repeated = sorted({seat for seat in seats if seats.count(seat) > 1})
        if repeated:
            raise InvalidSeatMapError(f"seats listed more than once: {', '.join(repeated)}")
        if price_cents < 0:
            raise InvalidSeatMapError("price_cents must not be negative")
        return cls(
            show_id=show_id,
            title=title,
            starts_at=starts_at,
            seats=list(seats),
            price_cents=price_cents,
            owner=owner,
        )

    @event("ShowScheduled")
    def __init__(
        self,
        show_id: str,
        title: str,
        starts_at: str,
        seats: list[str],
        price_cents: int,
        owner: str | None = None,
    ) -> None:
        self.show_id = show_id
        self.owner = owner
        self.title = title
        self.starts_at = starts_at
        self.seats = seats
        self.price_cents = price_cents
        self.cancelled = False
        self.held: dict[str, str] = {}
        self.sold: dict[str, str] = {}
        self.waiting: list[dict[str, Any]] = []

    @property
    def status(self) -> str:
        """``scheduled`` or ``cancelled``."""
        return "cancelled" if self.cancelled else "scheduled"

    @property
    def available(self) -> list[str]:
        """Seats neither held nor sold, in seat-map order."""
        return [s for s in self.seats if s not in self.held and s not in self.sold]

    def check_bookable(self, seats: list[str]) -> None:
        """Raise unless ``seats`` are distinct seats of this scheduled show."""
        self._require_scheduled()
        self._require_known(seats)
        repeated = sorted({seat for seat in seats if seats.count(seat) > 1})
        if repeated:
            raise UnknownSeatError(f"seats listed more than once: {', '.join(repeated)}")

    @property
    def reservation_ids(self) -> list[str]:
        """The reservations holding or owning seats, in seat-map order."""
        holders = [self.held.get(s) or self.sold.get(s) for s in self.seats]
        return list(dict.fromkeys(h for h in holders if h is not None))

    @property
    def waiting_ids(self) -> list[str]:
        """The reservations on the waiting list, first in line first."""
        return [entry["reservation_id"] for entry in self.waiting]

    def reserve_or_wait(self, reservation_id: str, seats: list[str]) -> bool:
        """Hold ``seats`` if they are all free (True), else join the waiting list (False).

        One decision on one aggregate: a release that races it writes this show too, so
        optimistic concurrency orders the two and nobody waits for seats that are free.
        """
        self._require_scheduled()
        self._require_known(seats)
        if set(seats) <= set(self.available):
            self._seats_reserved(reservation_id=reservation_id, seats=seats)
            return True
        if reservation_id not in self.waiting_ids:
            self._joined_waiting_list(reservation_id=reservation_id, seats=seats)
        return False

    @event("SeatsReserved")
    def _seats_reserved(self, reservation_id: str, seats: list[str]) -> None:
        for seat in seats:
            self.held[seat] = reservation_id

    @event("CustomerJoinedWaitingList")
    def _joined_waiting_list(self, reservation_id: str, seats: list[str]) -> None:
        self.waiting.append({"reservation_id": reservation_id, "seats": seats})

    def leave_waiting_list(self, reservation_id: str) -> None:
        """Take ``reservation_id`` off the waiting list; not on it is a no-op."""
        if reservation_id in self.waiting_ids:
            self._left_waiting_list(reservation_id=reservation_id)

    @event("CustomerLeftWaitingList")
    def _left_waiting_list(self, reservation_id: str) -> None:
        self.waiting = [e for e in self.waiting if e["reservation_id"] != reservation_id]

    def offer_free_seats(self) -> list[str]:
        """Hold free seats for those waiting, first in line first; returns who got them.

        Each one served leaves the waiting list with its seats held, in this same save.
        """
        offered: list[str] = []
        if self.cancelled:
            return offered
        while (entry := self._first_fitting()) is not None:
            reservation_id = str(entry["reservation_id"])
            self._left_waiting_list(reservation_id=reservation_id)
            self._seats_reserved(reservation_id=reservation_id, seats=list(entry["seats"]))
            offered.append(reservation_id)
        return offered

    def _first_fitting(self) -> dict[str, Any] | None:
        free = set(self.available)
        return next((e for e in self.waiting if set(e["seats"]) <= free), None)

    def release_seats(self, reservation_id: str) -> list[str]:
        """Free every seat held or sold for ``reservation_id``; returns them (none is a no-op)."""
        seats = [s for s in self.seats if reservation_id in (self.held.get(s), self.sold.get(s))]
        if seats:
            self._seats_released(reservation_id=reservation_id, seats=seats)
        return seats

    @event("SeatsReleased")
    def _seats_released(self, reservation_id: str, seats: list[str]) -> None:
        for seat in seats:
            self.held.pop(seat, None)
            self.sold.pop(seat, None)

    def sell_seats(self, reservation_id: str) -> None:
        """Turn the seats held for ``reservation_id`` into sold seats."""
        seats = [s for s in self.seats if self.held.get(s) == reservation_id]
        if not seats:
            raise SeatNotHeldError(f"no seats are held for reservation {reservation_id}")
        self._seats_sold(reservation_id=reservation_id, seats=seats)

    @event("SeatsSold")
    def _seats_sold(self, reservation_id: str, seats: list[str]) -> None:
        for seat in seats:
            del self.held[seat]
            self.sold[seat] = reservation_id

    def cancel(self) -> None:
        """Cancel the show; cancelling twice is a conflict."""
        self._require_scheduled()
        self._show_cancelled()

    @event("ShowCancelled")
    def _show_cancelled(self) -> None:
        self.cancelled = True

    def _require_scheduled(self) -> None:
        if self.cancelled:
            raise ShowCancelledError(f"show {self.show_id} is cancelled")

    def _require_known(self, seats: list[str]) -> None:
        unknown = [s for s in seats if s not in self.seats]
        if unknown:
            raise UnknownSeatError(f"no such seats on show {self.show_id}: {', '.join(unknown)}")
