"""The webhook outbox: the deliveries to make, with the dispatcher's position."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL

from infrastructure.leased_work import FencedTrackingRecorder
from infrastructure.webhooks.addresses import destination_of


@dataclass(frozen=True)
class Delivery:
    """One command outcome to POST to one URL."""

    delivery_id: str
    url: str
    body: bytes
    attempts: int


class WebhookOutbox(FencedTrackingRecorder):
    """The deliveries to make, and the dispatcher's position (``webhooks_tracking``)."""

    CREATE = (
        "CREATE TABLE IF NOT EXISTS webhook_deliveries ("
        "delivery_id text PRIMARY KEY, url text NOT NULL, destination text NOT NULL, "
        "body bytea NOT NULL, status text NOT NULL DEFAULT 'pending', "
        "attempts int NOT NULL DEFAULT 0, last_error text, "
        "next_at timestamptz NOT NULL DEFAULT now(), "
        "created_at timestamptz NOT NULL DEFAULT now(), "
        "updated_at timestamptz NOT NULL DEFAULT now())"
    )
    INDEX = (
        "CREATE INDEX IF NOT EXISTS webhook_deliveries_due "
        "ON webhook_deliveries (next_at) WHERE status = 'pending'"
    )

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.sql_create_statements += [SQL(self.CREATE).format(), SQL(self.INDEX).format()]

    def enqueue(self, delivery: Delivery, tracking: Tracking) -> None:
        """Record a delivery to make and the dispatcher's new position, together."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "INSERT INTO webhook_deliveries (delivery_id, url, destination, body) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (delivery_id) DO NOTHING",
                (delivery.delivery_id, delivery.url, destination_of(delivery.url), delivery.body),
            )
            self._insert_tracking(curs, tracking)

    def claim(self, busy: Sequence[str], lease_seconds: float) -> Delivery | None:
        """A due delivery to a destination not in ``busy``, leased to the caller."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "UPDATE webhook_deliveries SET next_at = now() + make_interval(secs => %s) "
                "WHERE delivery_id = (SELECT delivery_id FROM webhook_deliveries "
                "WHERE status = 'pending' AND next_at <= now() AND destination <> ALL(%s) "
                "ORDER BY next_at LIMIT 1 FOR UPDATE SKIP LOCKED) "
                "RETURNING delivery_id, url, body, attempts",
                (lease_seconds, list(busy)),
            )
            row = curs.fetchone()
        if row is None:
            return None
        return Delivery(row["delivery_id"], row["url"], bytes(row["body"]), row["attempts"])

    def delivered(self, delivery_id: str) -> None:
        """The receiver took it."""
        self._finish(delivery_id, "delivered", None, 0.0)

    def failed(self, delivery_id: str, error: str, retry_in: float | None) -> None:
        """An attempt failed: try again in ``retry_in`` s, or park it (None)."""
        self._finish(delivery_id, "pending" if retry_in is not None else "parked", error, retry_in)

    def _finish(
        self, delivery_id: str, status: str, error: str | None, delay: float | None
    ) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "UPDATE webhook_deliveries SET status = %s, attempts = attempts + 1, "
                "last_error = %s, next_at = now() + make_interval(secs => %s), "
                "updated_at = now() WHERE delivery_id = %s",
                (status, error, delay or 0.0, delivery_id),
            )

    def counts(self) -> dict[str, int]:
        """The deliveries by status."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT status, count(*) AS n FROM webhook_deliveries GROUP BY status")
            return {row["status"]: row["n"] for row in curs.fetchall()}

    def listed(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        """Deliveries (of ``status``), most recently changed first."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT delivery_id, url, status, attempts, last_error, next_at, created_at, "
                "updated_at FROM webhook_deliveries WHERE %s::text IS NULL OR status = %s "
                "ORDER BY updated_at DESC LIMIT %s",
                (status, status, limit),
            )
            rows = curs.fetchall()
        return [
            {
                **row,
                "next_at": row["next_at"].isoformat(),
                "created_at": row["created_at"].isoformat(),
                "updated_at": row["updated_at"].isoformat(),
            }
            for row in rows
        ]
