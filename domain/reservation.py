"""The Reservation aggregate: a customer's request for seats of a show.

Every step of a reservation's life is recorded on it (seats held, waitlisted, paid,
refunded, ended), so that every command deciding on a reservation writes it, and
optimistic concurrency orders any two commands that race on one reservation.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import ConflictError
from domain.ids import aggregate_id

FINISHED = frozenset({"confirmed", "rejected", "cancelled", "expired"})


class ReservationStateError(ConflictError):
    """Raised when a reservation is moved from a status that does not allow it."""


class Reservation(Aggregate):
    """pending → confirmed | rejected | waitlisted | cancelled | expired.

    A waitlisted reservation returns to pending, its seats held, when they come free.
    ``has_seats`` says whether the show holds or sold seats for it, and ``payment``
    what became of its charge: None (none yet), captured, declined or refunded.
    ``owner`` is the client that placed it: only its commands may target it.
    """

    @staticmethod
    def create_id(reservation_id: str, **_: Any) -> UUID:
        """The aggregate id of the reservation the client calls ``reservation_id``."""
        return aggregate_id("reservation", reservation_id)

    @event("ReservationPlaced")
    def __init__(
        self,
        reservation_id: str,
        show_id: str,
        customer_id: str,
        seats: list[str],
        card_token: str,
        price_cents: int,
        owner: str | None = None,
    ) -> None:
        self.reservation_id = reservation_id
        self.owner = owner
        self.show_id = show_id
        self.customer_id = customer_id
        self.seats = seats
        self.card_token = card_token
        self.price_cents = price_cents
        self.status = "pending"
        self.reason: str | None = None
        self.has_seats = False
        self.payment: str | None = None

    @property
    def amount_cents(self) -> int:
        """What the reservation costs."""
        return self.price_cents * len(self.seats)

    @property
    def is_finished(self) -> bool:
        """True once confirmed, rejected, cancelled or expired."""
        return self.status in FINISHED

    @property
    def is_chargeable(self) -> bool:
        """Pending with its seats held and not charged yet: the moment to take the money."""
        return self.status == "pending" and self.has_seats and self.payment is None

    def hold_seats(self) -> None:
        """The show holds its seats now."""
        self._require("pending")
        if self.has_seats:
            raise ReservationStateError(f"reservation {self.reservation_id} holds its seats")
        self._seats_held()

    @event("ReservationSeatsHeld")
    def _seats_held(self) -> None:
        self.has_seats = True

    def waitlist(self) -> None:
        """Its seats were taken: it waits for them on the show's waiting list."""
        self._require("pending")
        self._waitlisted()

    @event("ReservationWaitlisted")
    def _waitlisted(self) -> None:
        self.status = "waitlisted"
        self.reason = "seats unavailable; on the waiting list"

    def offer(self) -> None:
        """Its seats came free and are held for it: it runs again."""
        self._require("waitlisted")
        self._offered()

    @event("ReservationOffered")
    def _offered(self) -> None:
        self.status = "pending"
        self.reason = None
        self.has_seats = True

    def paid(self) -> None:
        """The payment was captured."""
        if not self.is_chargeable:
            raise ReservationStateError(
                f"reservation {self.reservation_id} is {self.status}; it cannot be paid"
            )
        self._paid()

    @event("ReservationPaid")
    def _paid(self) -> None:
        self.payment = "captured"

    def payment_declined(self, reason: str) -> None:
        """The gateway refused the card."""
        if not self.is_chargeable:
            raise ReservationStateError(
                f"reservation {self.reservation_id} is {self.status}; it cannot be charged"
            )
        self._payment_declined(reason=reason)

    @event("ReservationPaymentDeclined")
    def _payment_declined(self, reason: str) -> None:
        self.payment = "declined"
        self.reason = reason

    def refunded(self) -> None:
        """Its captured payment went back."""
        if self.payment != "captured":
            raise ReservationStateError(f"reservation {self.reservation_id} has no payment")
        self._refunded()

    @event("ReservationRefunded")
    def _refunded(self) -> None:
        self.payment = "refunded"

    def confirm(self) -> None:
        """Seats sold and paid: the reservation holds."""
        self._require("pending")
        if self.payment != "captured":
            raise ReservationStateError(f"reservation {self.reservation_id} is not paid")
        self._confirmed()

    @event("ReservationConfirmed")
    def _confirmed(self) -> None:
        self.status = "confirmed"

    def reject(self, reason: str) -> None:
        """The reservation failed (payment declined, seats not to be had)."""
        self._require("pending")
        self._rejected(reason=reason)

    @event("ReservationRejected")
    def _rejected(self, reason: str) -> None:
        self.status = "rejected"
        self.reason = reason
        self.has_seats = False

    def expire(self) -> None:
        """No payment outcome before the deadline."""
        self._require("pending")
        self._expired()

    @event("ReservationExpired")
    def _expired(self) -> None:
        self.status = "expired"
        self.reason = "no payment outcome before the deadline"
        self.has_seats = False

    def cancel(self, reason: str) -> None:
        """Cancelled by the customer or with its show."""
        self._require("pending", "confirmed", "waitlisted")
        self._cancelled(reason=reason)

    @event("ReservationCancelled")
    def _cancelled(self, reason: str) -> None:
        self.status = "cancelled"
        self.reason = reason
        self.has_seats = False

    def _require(self, *statuses: str) -> None:
        if self.status not in statuses:
            raise ReservationStateError(
                f"reservation {self.reservation_id} is {self.status}, not {' or '.join(statuses)}"
            )
