"""A command's first message is sent by the web process that accepted it, and the relay
sends only what a web process left unsent: on real gunicorn, relay, Celery worker,
RabbitMQ and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.utils import get_topic

from application.command import Command
from application.event_log import BoxofficeApplication
from infrastructure.settings import ApiKey
from tests.e2e.conftest import ADMIN_TOKEN, TOKEN, Client, free_port, stack_database
from tests.e2e.test_metrics_live import value
from tests.support.processes import ServiceProcess, http_ready, running, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

SHOW = {"title": "T", "starts_at": "2027-01-01T20:00:00Z", "seats": ["A1"], "price_cents": 1}
EVENTS = f"{BoxofficeApplication.name.lower()}_events"
STARTED = get_topic(Command.CommandStarted)
SUCCEEDED = get_topic(Command.CommandSucceeded)
ACCEPTED = get_topic(Command.CommandAccepted)


class Stack:
    def __init__(self, base: str, database_url: str, web: ServiceProcess, relay: Path) -> None:
        self.client = Client(base)
        self.admin = Client(base, ADMIN_TOKEN)
        self.database_url = database_url
        self.web = web
        self.relay_log = relay

    def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(statement, args).fetchall()

    def topics_of(self, command_id: str) -> list[str]:
        rows = self.sql(
            f"SELECT topic FROM {EVENTS} WHERE originator_id = %s "  # noqa: S608 - a constant
            "ORDER BY originator_version",
            uuid.UUID(command_id),
        )
        return [str(topic) for (topic,) in rows]

    def net_passed_every_accept(self) -> bool:
        """Whether the relay's safety net has passed every accept in the log."""
        ((accepts, net),) = self.sql(
            f"SELECT (SELECT max(notification_id) FROM {EVENTS} "  # noqa: S608 - a constant
            f"WHERE topic = '{ACCEPTED}'), (SELECT max(notification_id) FROM relay_net_tracking)"
        )
        return accepts is not None and net is not None and net >= accepts


def stack_with(
    server_database_url: str, broker_url: str, tmp_path: Path, web_broker: str
) -> Iterator[Stack]:
    with stack_database(
        server_database_url,
        broker_url,
        "e2e.direct",
        PUBLISH_GRACE_SECONDS="1",
        LOG_FORMAT="json",
        API_KEYS=f"alice commands:write,commands:read sha256:{ApiKey.digest_of(TOKEN)};"
        f"ops admin sha256:{ApiKey.digest_of(ADMIN_TOKEN)}",
    ) as (database_url, env, port):
        web = ServiceProcess("web", {**env, "BROKER_URL": web_broker}, tmp_path)
        relay = ServiceProcess("relay", env, tmp_path)
        with running(web, relay, ServiceProcess("worker", env, tmp_path)):
            base = f"http://127.0.0.1:{port}"
            wait_until(http_ready(base + "/health"), 30, "gunicorn to answer")
            yield Stack(base, database_url, web, relay.log)


@pytest.fixture
def stack(server_database_url: str, broker_url: str, tmp_path: Path) -> Iterator[Stack]:
    yield from stack_with(server_database_url, broker_url, tmp_path, broker_url)


@pytest.fixture
def cut_off_web(server_database_url: str, broker_url: str, tmp_path: Path) -> Iterator[Stack]:
    """The web process's broker is a port nobody listens on: each of its publishes
    fails after the accept has committed."""
    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    yield from stack_with(server_database_url, broker_url, tmp_path, nowhere)


def test_the_web_publishes_what_it_accepts_and_the_relay_publishes_none_of_it(
    stack: Stack,
) -> None:
    ids = []
    for n in range(10):
        answer = stack.client.request(
            "PUT",
            f"/shows/direct-{n}",
            SHOW,
            {"Idempotency-Key": f"direct-{n}", "Prefer": "wait=10"},
        )
        assert answer.status == 201, answer.body
        ids.append(answer.body["command_id"])
    wait_until(stack.net_passed_every_accept, 30, "the safety net to pass every accept")

    # Each ran on its first delivery, without a lease: no takeover was published.
    for command_id in ids:
        assert stack.topics_of(command_id) == [ACCEPTED, SUCCEEDED]
    # The safety net took every mark the web wrote, and published nothing.
    assert stack.sql("SELECT count(*) FROM published_commands") == [(0,)]
    assert "left unpublished" not in stack.relay_log.read_text()
    metrics = stack.admin.request_text("GET", "/metrics")
    name = "boxoffice_command_messages_published_total"
    assert value(metrics, name, source="accepting_process") == 10


def test_a_web_killed_between_commit_and_publish_loses_no_command(cut_off_web: Stack) -> None:
    stack = cut_off_web
    answer = stack.client.request("PUT", "/shows/stranded", SHOW, {"Idempotency-Key": "stranded"})
    assert answer.status == 202, answer.body
    command_id = answer.body["command_id"]
    # Committed, its publish failed; now the process dies, with nothing left to retry.
    stack.web.kill()

    wait_until(lambda: SUCCEEDED in stack.topics_of(command_id), 30, "the command to run")
    # The relay's safety net published it as a takeover: its run took the lease first.
    assert stack.topics_of(command_id) == [ACCEPTED, STARTED, SUCCEEDED]
    assert "left unpublished where it was accepted" in stack.relay_log.read_text()
