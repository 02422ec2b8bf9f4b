"""The Reservation aggregate: a customer's request for seats of a show."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import ConflictError
from domain.ids import aggregate_id


class ReservationStateError(ConflictError):
    """Raised when a reservation is moved from a status that does not allow it."""


class Reservation(Aggregate):
    """pending → confirmed | rejected | waitlisted | cancelled | expired.

    A waitlisted reservation returns to pending when seats are offered to it.
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
    ) -> None:
        self.reservation_id = reservation_id
        self.show_id = show_id
        self.customer_id = customer_id
        self.seats = seats
        self.card_token = card_token
        self.price_cents = price_cents
        self.status = "pending"
        self.reason: str | None = None

    @property
    def amount_cents(self) -> int:
        """What the reservation costs."""
        return self.price_cents * len(self.seats)

    def confirm(self) -> None:
        """Seats sold and paid: the reservation holds."""
        self._require("pending")
        self._confirmed()

    @event("ReservationConfirmed")
    def _confirmed(self) -> None:
        self.status = "confirmed"

    def reject(self, reason: str) -> None:
        """The reservation failed (payment declined)."""
        self._require("pending")
        self._rejected(reason=reason)

    @event("ReservationRejected")
    def _rejected(self, reason: str) -> None:
        self.status = "rejected"
        self.reason = reason

    def waitlist(self) -> None:
        """Its seats were taken: it waits for them."""
        self._require("pending")
        self._waitlisted()

    @event("ReservationWaitlisted")
    def _waitlisted(self) -> None:
        self.status = "waitlisted"
        self.reason = "seats unavailable; on the waiting list"

    def offer(self) -> None:
        """Its seats came free: it runs again."""
        self._require("waitlisted")
        self._offered()

    @event("ReservationOffered")
    def _offered(self) -> None:
        self.status = "pending"
        self.reason = None

    def expire(self) -> None:
        """No payment outcome before the deadline."""
        self._require("pending")
        self._expired()

    @event("ReservationExpired")
    def _expired(self) -> None:
        self.status = "expired"
        self.reason = "no payment outcome before the deadline"

    def cancel(self, reason: str) -> None:
        """Cancelled by the customer or with its show."""
        self._require("pending", "confirmed", "waitlisted")
        self._cancelled(reason=reason)

    @event("ReservationCancelled")
    def _cancelled(self, reason: str) -> None:
        self.status = "cancelled"
        self.reason = reason

    def _require(self, *statuses: str) -> None:
        if self.status not in statuses:
            raise ReservationStateError(
                f"reservation {self.reservation_id} is {self.status}, not {' or '.join(statuses)}"
            )
