"""The shipped fake payment gateway: deterministic by card token.

| card token    | answer                                                      |
|---------------|-------------------------------------------------------------|
| `tok_approve` | approved                                                    |
| `tok_decline` | declined (a domain outcome, not an error)                   |
| `tok_flaky`   | unavailable twice for a charge, then approved               |
| `tok_outage`  | always unavailable (a technical failure)                    |
| `tok_slow`    | approved, but only after ``slow_seconds`` (past the deadline) |
| anything else | declined: unknown card                                      |

It keeps a ledger by idempotency key, the way a real gateway does: a key already
answered gets the same answer again, so a retried charge never charges twice.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from eventsourcing.application import Application
from eventsourcing.postgres import PostgresDatastore

from application.ports import ChargeResult, PaymentGateway, PaymentGatewayUnavailableError
from infrastructure.settings import Settings

# Calls per charge answered "unavailable" before the real answer (None: every call).
UNAVAILABLE_CALLS: dict[str, int | None] = {"tok_outage": None, "tok_flaky": 2}
APPROVES = frozenset({"tok_approve", "tok_flaky", "tok_slow"})
DECLINES = {"tok_decline": "card declined"}
SLOW = frozenset({"tok_slow"})


@dataclass
class LedgerEntry:
    """One idempotency key's calls and, once answered, its answer."""

    calls: int
    result: ChargeResult | None
    refunded: bool = False


class Ledger(Protocol):
    """Where the fake keeps its charges."""

    def call(self, key: str) -> LedgerEntry:
        """Count a call for ``key``; returns the entry after counting."""
        ...

    def answer(self, key: str, result: ChargeResult) -> None:
        """Record the answer given for ``key``."""
        ...

    def refund(self, key: str) -> None:
        """Mark ``key``'s charge refunded; a key with no approved charge is left alone."""
        ...


class InMemoryLedger:
    """A ledger for one process (unit tests)."""

    def __init__(self) -> None:
        self.entries: dict[str, LedgerEntry] = {}
        self._lock = threading.Lock()

    def call(self, key: str) -> LedgerEntry:
        with self._lock:
            entry = self.entries.setdefault(key, LedgerEntry(calls=0, result=None))
            entry.calls += 1
            return LedgerEntry(entry.calls, entry.result, entry.refunded)

    def answer(self, key: str, result: ChargeResult) -> None:
        with self._lock:
            self.entries[key].result = result

    def refund(self, key: str) -> None:
        with self._lock:
            entry = self.entries.get(key)
            if entry is not None and entry.result is not None and entry.result.approved:
                entry.refunded = True


class PostgresLedger:
    """A ledger shared by every worker process, in the event store's database."""

    CREATE = (
        "CREATE TABLE IF NOT EXISTS fake_gateway_charges ("
        "key text PRIMARY KEY, calls int NOT NULL, approved boolean, reference text, "
        "reason text, refunded boolean NOT NULL DEFAULT false)"
    )

    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore

    def create_table(self) -> None:
        """Create the ledger's table (``boxoffice migrate``)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self.CREATE)

    def call(self, key: str) -> LedgerEntry:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "INSERT INTO fake_gateway_charges (key, calls) VALUES (%s, 1) "
                "ON CONFLICT (key) DO UPDATE SET calls = fake_gateway_charges.calls + 1 "
                "RETURNING calls, approved, reference, reason, refunded",
                (key,),
            )
            row = curs.fetchone()
        assert row is not None
        result = None
        if row["approved"] is not None:
            result = ChargeResult(row["approved"], row["reference"], row["reason"])
        return LedgerEntry(row["calls"], result, row["refunded"])

    def answer(self, key: str, result: ChargeResult) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "UPDATE fake_gateway_charges SET approved = %s, reference = %s, reason = %s "
                "WHERE key = %s AND approved IS NULL",
                (result.approved, result.reference, result.reason, key),
            )

    def refund(self, key: str) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "UPDATE fake_gateway_charges SET refunded = true WHERE key = %s AND approved",
                (key,),
            )


class FakePaymentGateway:
    """:class:`application.ports.PaymentGateway`, answering by card token."""

    def __init__(self, ledger: Ledger, slow_seconds: float = 35.0) -> None:
        self.ledger = ledger
        self.slow_seconds = slow_seconds

    def charge(self, idempotency_key: str, amount_cents: int, card_token: str) -> ChargeResult:
        """Charge once per key; see the module's table for the answers."""
        entry = self.ledger.call(idempotency_key)
        if entry.result is not None:
            return entry.result
        failing_calls = UNAVAILABLE_CALLS.get(card_token, 0)
        if failing_calls is None or entry.calls <= failing_calls:
            raise PaymentGatewayUnavailableError("gateway unavailable")
        if card_token in SLOW:
            time.sleep(self.slow_seconds)
        if card_token in APPROVES:
            result = ChargeResult(approved=True, reference=f"ch_{idempotency_key[-12:]}")
        else:
            reason = DECLINES.get(card_token, "unknown card")
            result = ChargeResult(approved=False, reason=reason)
        self.ledger.answer(idempotency_key, result)
        return result

    def refund(self, idempotency_key: str) -> None:
        """Refund the charge made with ``idempotency_key``; nothing when none was made."""
        self.ledger.refund(idempotency_key)


def fake_gateway(settings: Settings, app: Application[Any]) -> PaymentGateway:
    """The fake, with its ledger in the event store's database (in memory without one)."""
    datastore = getattr(app.recorder, "datastore", None)
    ledger: Ledger = PostgresLedger(datastore) if datastore is not None else InMemoryLedger()
    return FakePaymentGateway(ledger, slow_seconds=settings.fake_gateway_slow_seconds)


# Builds a gateway adapter from the settings and this process's event-store application.
GatewayFactory = Callable[[Settings, Application[Any]], PaymentGateway]


def build_payment_gateway(settings: Settings, app: Application[Any]) -> PaymentGateway:
    """The adapter ``PAYMENT_GATEWAY`` names: ``fake``, or ``package.module:factory`` for a
    :data:`GatewayFactory` of another adapter."""
    if settings.payment_gateway == "fake":
        return fake_gateway(settings, app)
    module, _, name = settings.payment_gateway.partition(":")
    factory: GatewayFactory = getattr(importlib.import_module(module), name)
    return factory(settings, app)
