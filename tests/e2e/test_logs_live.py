"""Every component's log lines about one reservation name its commands, and no line
anywhere holds a secret (the card token, the API key, the webhook secret) or a body."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import (
    TOKEN,
    WEBHOOK_SECRET,
    LiveService,
    create_show,
    log_lines,
    place_reservation,
    reservation_settled,
)
from tests.support.processes import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

COMPONENTS = ("web", "relay", "worker", "projector", "saga-runner")


def test_each_line_about_a_reservation_names_its_command_and_no_line_holds_a_secret(
    live: LiveService,
) -> None:
    client = live.client()
    show_id, reservation_id = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    # In the body only: it must reach no log line, nor the card token.
    customer = f"customer-{uuid.uuid4().hex}"
    create_show(live, show_id, seat="A1", price_cents=10)
    # tok_flaky: the charge fails twice (retried, each failure logged) before it passes.
    place_reservation(live, show_id, reservation_id, "tok_flaky", customer)
    saga_id = reservation_settled(live, reservation_id)
    commands = {
        c["command_id"]: c
        for c in client.request("GET", f"/commands?correlation_id={saga_id}").body["items"]
    }
    assert len(commands) == 4
    charge = next(c for c in commands.values() if c["type"] == "ChargePayment")
    assert len(charge["attempts"]) >= 3

    def all_visible() -> bool:
        # The projector's line for the last outcome comes with the view's write.
        return all(
            any(line.get("command_id") == i for line in log_lines(live, "projector"))
            for i in commands
        )

    wait_until(all_visible, 30, "the projector's lines for every command")

    about: dict[str, list[dict[str, Any]]] = {}
    for part in COMPONENTS:
        lines = log_lines(live, part)
        assert lines, f"{part} logged no JSON line"
        raw = (live.log_dir / f"{part}.log").read_text(errors="replace")
        for secret in (TOKEN, WEBHOOK_SECRET, "tok_flaky", customer):
            assert secret not in raw, f"{part}'s log holds {secret!r}"
        for line in lines:
            assert {"timestamp", "level", "logger", "component", "message"} <= set(line)
            if any(i in json.dumps(line) for i in commands):
                # A line that says one of the ids is about that command, named in full.
                assert line.get("command_id") in commands, (part, line)
            if line.get("command_id") in commands:
                command = commands[line["command_id"]]
                assert line["correlation_id"] == saga_id, (part, line)
                assert line["causation_id"] == command["causation_id"], (part, line)
                about.setdefault(part, []).append(line)
    # Every component said something about the reservation's commands.
    assert set(about) == set(COMPONENTS)
    worker_lines = about["worker"]
    assert set(commands) <= {line["command_id"] for line in worker_lines}
    retried = [
        line
        for line in worker_lines
        if line["command_id"] == charge["command_id"] and line["level"] == "warning"
    ]
    assert len(retried) >= 2  # each failed charge, with its error, yet no token
    assert any("accepted" in line["message"] for line in about["web"])


def test_every_process_of_every_part_leaves_its_start_up_out_of_garbage_collection(
    live: LiveService,
) -> None:
    """Each part's process says it froze what it built (infrastructure/heap.py), and
    each process of the web's and the worker's after its fork: two gunicorn workers,
    two Celery pool processes."""
    settled: dict[str, set[int]] = {}
    for part in COMPONENTS:
        for line in log_lines(live, part):
            if line["logger"] == "infrastructure.heap":
                assert line["message"].startswith("start-up done"), line
                settled.setdefault(part, set()).add(line["pid"])
    assert set(settled) == set(COMPONENTS)
    assert len(settled["web"]) >= 2
    assert len(settled["worker"]) >= 2
