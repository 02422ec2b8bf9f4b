"""A follower that cannot apply an event says so: in the log with the event's position,
on /projections and on /health, until it gets past the event.

Two poisons: a NUL in a command module's payload (accepted: the module's schema is not
the domain's ``Payload``), which PostgreSQL's jsonb refuses in the command registry,
for good; and a CHECK constraint that refuses every row of the shows view, until the
test drops it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from flask.testing import FlaskClient

from interfaces.http import create_app
from tests.integration.conftest import Stack
from tests.support.processes import running, wait_until

pytestmark = [pytest.mark.postgres]


def stalls(client: FlaskClient) -> dict[str, object]:
    return {p["name"]: p["stalled"] for p in client.get("/projections").get_json()["items"]}


def test_a_stalled_projection_is_reported_until_it_gets_past_the_event(
    database_url: str, tmp_path: Path
) -> None:
    stack = Stack(database_url, "memory://", f"stall.{uuid.uuid4().hex[:8]}", tmp_path)
    projector = stack.process("projector")
    client = create_app(stack.container).test_client()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE shows ADD CONSTRAINT no_rows CHECK (false)")
    with running(projector):
        poison = stack.submit("Bump", key="nul\x00key")
        show = stack.submit(
            "CreateShow",
            show_id="s1",
            title="Hamlet",
            starts_at="2027-01-01T20:00:00Z",
            seats=["A1"],
            price_cents=100,
        )
        # Nobody executes commands here: the accepted commands and the show's creation
        # are what the views have to apply (the show is created by hand below).
        stack.container.pipeline.execute(show.command.id, 1, "test")

        def stalled_for_good() -> bool:
            health = client.get("/health").get_json()
            names = {s["name"] for s in health["stalled"]}
            return {"command_registry", "shows"} <= names

        wait_until(stalled_for_good, 30, "both views to be reported stalled")
        health = client.get("/health")
        assert health.status_code == 200
        assert health.get_json()["status"] == "degraded"
        registry = next(s for s in health.get_json()["stalled"] if s["name"] == "command_registry")
        assert registry["position"] == poison.position
        # The NUL is refused by the driver (an indexed text column) or by PostgreSQL.
        assert "NUL" in registry["error"] or "\\u0000" in registry["error"]
        views = stalls(client)
        assert views["command_registry"]["position"] == poison.position  # type: ignore[index]
        assert views["reservations"] is None
        assert f"could not apply the event at position {poison.position}" in projector.output()

        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE shows DROP CONSTRAINT no_rows")
        wait_until(
            lambda: stalls(client)["shows"] is None and client.get("/shows/s1").status_code == 200,
            30,
            "the shows view to get past the event",
        )
        names = {s["name"] for s in client.get("/health").get_json()["stalled"]}
        assert names == {"command_registry"}
    stack.container.close()
