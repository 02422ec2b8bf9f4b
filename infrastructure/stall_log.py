"""Where followers record the event they cannot get past."""

from __future__ import annotations

from typing import Any

from eventsourcing.postgres import PostgresDatastore


class StallLog:
    """Where followers record the event they cannot get past, for /health and /projections.

    One row per follower that is failing: the event's position, the error, how many
    tries in a row failed on it, and since when. The row goes once an event is applied.
    """

    CREATE = (
        "CREATE TABLE IF NOT EXISTS follower_stalls (name text PRIMARY KEY, "
        "position bigint NOT NULL, error text NOT NULL, attempts int NOT NULL, "
        "since timestamptz NOT NULL DEFAULT now(), last_at timestamptz NOT NULL DEFAULT now())"
    )

    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore

    def create_table(self) -> None:
        """Create the table (``boxoffice migrate``)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self.CREATE)

    def record(self, name: str, position: int, error: str) -> None:
        """One more failed try of ``name`` on the event at ``position``."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "INSERT INTO follower_stalls (name, position, error, attempts) "
                "VALUES (%s, %s, %s, 1) ON CONFLICT (name) DO UPDATE SET "
                "attempts = CASE WHEN follower_stalls.position = EXCLUDED.position "
                "THEN follower_stalls.attempts + 1 ELSE 1 END, "
                "since = CASE WHEN follower_stalls.position = EXCLUDED.position "
                "THEN follower_stalls.since ELSE now() END, "
                "position = EXCLUDED.position, error = EXCLUDED.error, last_at = now()",
                (name, position, error),
            )

    def clear(self, name: str) -> None:
        """``name`` applied an event: it is not stalled."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("DELETE FROM follower_stalls WHERE name = %s", (name,))

    def all(self) -> dict[str, dict[str, Any]]:
        """Every failing follower's row, by name."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT name, position, error, attempts, since, last_at FROM follower_stalls"
            )
            return {
                row["name"]: {
                    "position": row["position"],
                    "error": row["error"],
                    "attempts": row["attempts"],
                    "since": row["since"].isoformat(),
                    "last_at": row["last_at"].isoformat(),
                }
                for row in curs.fetchall()
            }
