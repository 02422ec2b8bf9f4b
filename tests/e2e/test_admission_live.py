"""Admission control on real services: two gunicorn processes shed new commands while
the workers are down, keep the room of the ones they told to come back, and never shed
a read."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Answer, Client, stack_database
from tests.support.processes import ServiceProcess, http_ready, running, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

SHOW = {"title": "T", "starts_at": "2027-01-01T20:00:00Z", "seats": ["A1"], "price_cents": 1}
SMALLEST = 5
LIMIT_SECONDS = 2


class Stack:
    def __init__(self, base: str, worker: ServiceProcess) -> None:
        self.client = Client(base, token=None)
        self.worker = worker


@pytest.fixture
def stack(server_database_url: str, broker_url: str, tmp_path: Path) -> Iterator[Stack]:
    with stack_database(
        server_database_url,
        broker_url,
        "e2e.admission",
        MAX_BACKLOG_SECONDS=str(LIMIT_SECONDS),
        ADMISSION_MIN_BACKLOG=str(SMALLEST),
    ) as (_, env, port):
        parts = [ServiceProcess(part, env, tmp_path) for part in ("web", "relay", "projector")]
        worker = ServiceProcess("worker", env, tmp_path)
        with running(*parts):
            base = f"http://127.0.0.1:{port}"
            wait_until(http_ready(base + "/health"), 30, "gunicorn to answer")
            try:
                yield Stack(base, worker)
            finally:
                worker.stop()


def put_show(stack: Stack, key: str) -> Answer:
    return stack.client.request(
        "PUT", f"/shows/{key}", SHOW, headers={"Idempotency-Key": f"key-{key}"}
    )


def test_the_backlog_is_shed_while_no_worker_runs_and_room_is_kept_for_who_was_told(
    stack: Stack,
) -> None:
    # No worker: each command waits. The first few fit under the smallest backlog.
    first = [put_show(stack, f"s{i}") for i in range(SMALLEST)]
    assert [answer.status for answer in first] == [202] * SMALLEST

    # Once the registry shows them waiting and nothing decided, new ones are shed (a
    # probe sent before the web processes read that is taken, and waits too).
    answers: list[Answer] = []

    def shed() -> bool:
        answers.append(put_show(stack, f"probe{len(answers)}"))
        return answers[-1].status == 503

    wait_until(shed, 30, "a 503 once the backlog is read")
    told = f"probe{len(answers) - 1}"
    refused = answers[-1]
    assert refused.header("Retry-After") == str(LIMIT_SECONDS)  # nothing drains: the limit
    assert refused.body["type"] == "/problems/backlog-full"
    assert refused.body["waiting"] >= SMALLEST
    # Reads are never shed.
    location = first[0].header("Location")
    assert location is not None
    assert stack.client.request("GET", location).status == 200
    assert stack.client.request("GET", "/shows/s0").status in (200, 404)

    # Back when told, with no worker still: nothing drained to make room.
    time.sleep(LIMIT_SECONDS)
    assert put_show(stack, told).status == 503

    # Workers back: the backlog drains, and the command told to wait is taken, then new
    # ones, each told when its outcome is expected.
    stack.worker.start()
    wait_until(lambda: put_show(stack, told).status == 202, 60, "the backlog to drain")
    # (A web process's reading is up to half a second old: each one sees the drain.)
    answers.clear()

    def accepted() -> bool:
        answers.append(put_show(stack, f"later{len(answers)}"))
        return answers[-1].status == 202

    wait_until(accepted, 10, "new commands to be accepted")
    assert int(answers[-1].header("Retry-After") or "0") >= 1
