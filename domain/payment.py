"""The Payment aggregate: one charge per reservation, and its refund."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import ConflictError
from domain.ids import aggregate_id


class PaymentStateError(ConflictError):
    """Raised when a payment is moved from a status that does not allow it."""


class Payment(Aggregate):
    """requested → captured → refunded, or requested → declined."""

    @staticmethod
    def create_id(reservation_id: str, **_: Any) -> UUID:
        """The payment of reservation ``reservation_id``."""
        return aggregate_id("payment", reservation_id)

    @event("PaymentRequested")
    def __init__(self, reservation_id: str, amount_cents: int, card_token: str) -> None:
        self.reservation_id = reservation_id
        self.amount_cents = amount_cents
        self.card_token = card_token
        self.status = "requested"
        self.reference: str | None = None
        self.reason: str | None = None

    @staticmethod
    def idempotency_key_of(reservation_id: str) -> str:
        """The key the gateway sees for this reservation's charge: a retried charge never
        charges twice, and a refund by key finds a charge whose recording was lost."""
        return f"charge-{Payment.create_id(reservation_id)}"

    @property
    def idempotency_key(self) -> str:
        """The key the gateway sees for this charge."""
        return self.idempotency_key_of(self.reservation_id)

    def capture(self, reference: str) -> None:
        """The gateway took the money."""
        self._require("requested")
        self._captured(reference=reference)

    @event("PaymentCaptured")
    def _captured(self, reference: str) -> None:
        self.status = "captured"
        self.reference = reference

    def decline(self, reason: str) -> None:
        """The gateway refused the card."""
        self._require("requested")
        self._declined(reason=reason)

    @event("PaymentDeclined")
    def _declined(self, reason: str) -> None:
        self.status = "declined"
        self.reason = reason

    def refund(self) -> None:
        """The money went back."""
        self._require("captured")
        self._refunded()

    @event("PaymentRefunded")
    def _refunded(self) -> None:
        self.status = "refunded"

    def _require(self, status: str) -> None:
        if self.status != status:
            raise PaymentStateError(f"payment {self.id} is {self.status}, not {status}")
