"""Projections: rows and positions written together, so a killed projector loses nothing."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import Tracking

from application.command import Command
from application.operations import views as view_ops
from infrastructure.event_store import build_view
from infrastructure.projector import Projector
from projections.command_registry import (
    CommandRegistryProjection,
    CommandRegistryView,
    present_command,
)
from tests.integration.conftest import Stack
from tests.support.processes import wait_until

pytestmark = [pytest.mark.postgres]


class RebuiltRegistryView(CommandRegistryView):
    table = "command_registry_rebuilt"


class RebuiltRegistry(CommandRegistryProjection):
    name = "rebuilt"
    view_class = RebuiltRegistryView


def registry_rows(
    database_url: str, table: str, columns: str = "doc, status, type"
) -> dict[Any, Any]:
    """A registry table's ``columns`` by row id."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(f"SELECT id, {columns} FROM {table}").fetchall()  # noqa: S608
    return {row[0]: row[1:] for row in rows}


def position(database_url: str, name: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            f"SELECT max(notification_id) FROM {name}_tracking WHERE application_name = %s",  # noqa: S608
            ("Boxoffice",),
        ).fetchone()
    return int(row[0] or 0) if row else 0


def test_a_projector_killed_mid_stream_applies_every_event_exactly_once(stack: Stack) -> None:
    # 150 commands run to completion in this process: about 600 events to project.
    for i in range(150):
        acceptance = stack.submit("Bump", f"k{i}", key=f"t{i % 10}")
        stack.container.pipeline.execute(acceptance.command.id, 1, "test")
    head = stack.container.app.recorder.max_notification_id()
    assert head is not None

    projector = stack.process("projector")
    projector.start()
    wait_until(lambda: position(stack.database_url, "command_registry") > 50, 30, "progress")
    projector.kill()
    stopped_at = position(stack.database_url, "command_registry")
    projector.start()
    wait_until(lambda: position(stack.database_url, "command_registry") == head, 60, "catch-up")
    projector.stop()

    rebuilt_view = build_view(stack.settings, "rebuilt", RebuiltRegistryView, create_table=True)
    rebuilt = RebuiltRegistry(rebuilt_view, stack.container.app.repository)
    stop = threading.Event()
    runner = threading.Thread(
        target=Projector(stack.container.app, [rebuilt]).run, args=(stop,), daemon=True
    )
    runner.start()
    wait_until(lambda: position(stack.database_url, "rebuilt") == head, 60, "the rebuild")
    stop.set()
    runner.join(10)

    assert stopped_at > 50
    live_rows = registry_rows(stack.database_url, "command_registry")
    assert len(live_rows) == 150
    assert live_rows == registry_rows(stack.database_url, "command_registry_rebuilt")
    assert {row[1] for row in live_rows.values()} == {"succeeded"}
    # Documents built event by event equal those rendered from a fresh load.
    for command_id, (document, *_) in live_rows.items():
        loaded: Command = stack.container.app.repository.get(command_id)
        assert document == json.loads(json.dumps(present_command(loaded)))


def test_the_registry_row_follows_the_command_through_its_life(stack: Stack) -> None:
    acceptance = stack.submit("Bump", "k1", key="t", refuse=True)
    stack.container.pipeline.execute(acceptance.command.id, 1, "test")
    stop = threading.Event()
    runner = threading.Thread(target=stack.container.projector().run, args=(stop,), daemon=True)
    runner.start()
    head = stack.container.app.recorder.max_notification_id()
    wait_until(lambda: position(stack.database_url, "command_registry") == head, 30, "catch-up")
    stop.set()
    runner.join(10)

    document = stack.container.read_models.views["command_registry"].get(acceptance.command.id)

    assert document is not None
    assert document["status"] == "failed"
    assert [h["status"] for h in document["history"]] == ["accepted", "running", "failed"]
    assert document["error"]["type"] == "RefusedError"
    assert document["position"] == head


class OneByOneView(CommandRegistryView):
    table = "command_registry_one_by_one"


class OneByOne(CommandRegistryProjection):
    name = "one_by_one"
    view_class = OneByOneView


def test_events_applied_in_batches_give_the_rows_applied_one_at_a_time(stack: Stack) -> None:
    # Several events of one aggregate fall in one batch: 40 commands on 3 tallies.
    for i in range(40):
        acceptance = stack.submit("Bump", f"k{i}", key=f"t{i % 3}")
        stack.container.pipeline.execute(acceptance.command.id, 1, "test")
    app = stack.container.app
    head = app.recorder.max_notification_id()
    one_view = build_view(stack.settings, OneByOne.name, OneByOneView, create_table=True)
    one = OneByOne(one_view, app.repository)
    for notification in app.recorder.select_notifications(
        start=0, limit=10_000, topics=one.event_topics()
    ):
        one.process_event(
            app.mapper.to_domain_event(notification), Tracking(app.name, notification.id)
        )

    batched_view = build_view(stack.settings, "rebuilt", RebuiltRegistryView, create_table=True)
    batched = RebuiltRegistry(batched_view, app.repository)
    stop = threading.Event()
    runner = threading.Thread(target=Projector(app, [batched]).run, args=(stop,), daemon=True)
    runner.start()
    wait_until(lambda: position(stack.database_url, "rebuilt") == head, 60, "the batches")
    stop.set()
    runner.join(10)

    with_positions = "doc, position, status"
    one_rows = registry_rows(stack.database_url, "command_registry_one_by_one", with_positions)
    assert len(one_rows) == 40
    assert registry_rows(stack.database_url, "command_registry_rebuilt", with_positions) == one_rows


def test_the_lag_of_the_views_and_the_followers_is_counted_in_events_and_seconds(
    stack: Stack,
) -> None:
    operator = stack.container.operator
    for number in range(3):
        stack.submit("Bump", f"k{number}", key=f"t{number}")
    time.sleep(0.2)  # the accepts' events are this old, at least, when the lag is read

    views = {item["name"]: item for item in view_ops.projections_status(operator)}
    followers = {item["name"]: item for item in view_ops.followers_status(operator)}

    # No relay, projector or saga runner ran: the accept waits for the relay's safety
    # net and the registry, not for the relay's retries nor the saga runner (they follow
    # no accept).
    assert followers["relay-net"]["lag"] == 3
    assert followers["relay-net"]["lag_seconds"] >= 0.2
    # Counted up to a cap, and the oldest of them in hand, in two reads of one row each.
    assert operator.history.pending(0, [], 2)[0] == 2
    assert followers["relay"]["lag"] == 0
    assert followers["saga_runner"] == {
        "name": "saga_runner",
        "position": 0,
        "lag": 0,
        "lag_seconds": 0.0,
    }
    assert views["command_registry"]["lag"] == 3
    assert views["command_registry"]["lag_seconds"] >= 0.2
    assert views["shows"]["lag_seconds"] == 0.0
