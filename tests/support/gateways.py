"""A payment gateway adapter that tests configure with ``PAYMENT_GATEWAY``."""

from __future__ import annotations

from typing import Any

from eventsourcing.application import Application

from application.ports import ChargeResult
from infrastructure.settings import Settings


class DecliningGateway:
    """Declines every charge, and remembers the keys it was asked to charge."""

    def __init__(self) -> None:
        self.charged: list[str] = []

    def charge(self, idempotency_key: str, amount_cents: int, card_token: str) -> ChargeResult:
        self.charged.append(idempotency_key)
        return ChargeResult(approved=False, reason="declined by the configured adapter")

    def refund(self, idempotency_key: str) -> None:
        """Nothing was ever taken."""


def declining(settings: Settings, app: Application[Any]) -> DecliningGateway:
    """The :data:`infrastructure.payment_gateway.GatewayFactory` of :class:`DecliningGateway`."""
    return DecliningGateway()
