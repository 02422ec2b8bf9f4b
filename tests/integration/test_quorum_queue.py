"""The pipeline on a RabbitMQ quorum queue (``COMMAND_QUEUE_TYPE=quorum``): commands
run, and retries with backoff come back through native delayed delivery, no earlier
than their time."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import amqp
import kombu
import pytest

from tests.integration.conftest import Stack
from tests.support.processes import running

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def test_commands_and_their_retries_run_on_a_quorum_queue(
    database_url: str, broker_url: str, queue_name: str, tmp_path: Path
) -> None:
    # The test's own process accepts, and so publishes, as a web process would.
    stack = Stack(database_url, broker_url, queue_name, tmp_path, command_queue_type="quorum")
    quorum = {"COMMAND_QUEUE_TYPE": "quorum", "COMMAND_RETRY_BASE_DELAY": "1.2"}
    with running(stack.process("relay", **quorum), stack.process("worker", **quorum)):
        bumped = stack.submit("Bump", "k1", key="q")
        flaky = stack.submit(
            "Flaky", "k2", key="f", failures=2, attempts_file=f"{tmp_path}/attempts"
        )
        assert stack.outcome(bumped.command.id, timeout=60).status == "succeeded"
        done = stack.outcome(flaky.command.id, timeout=60)

    assert done.status == "succeeded"
    assert [a["attempt"] for a in done.attempts] == [1, 2, 3]
    # Each retry ran no earlier than the time its backoff set.
    due = [
        datetime.fromisoformat(h["detail"].split("retry at ", 1)[1])
        for h in done.history
        if h["status"] == "retrying"
    ]
    started = [datetime.fromisoformat(a["started_at"]) for a in done.attempts[1:]]
    assert len(due) == 2
    for retry_at, began in zip(due, started, strict=True):
        assert began >= retry_at

    # The queue RabbitMQ holds is a quorum queue: declared as a classic one, it refuses.
    with kombu.Connection(stack.broker_url) as conn:
        channel: Any = conn.channel()
        with pytest.raises(amqp.exceptions.PreconditionFailed):
            channel.queue_declare(stack.queue, durable=True, arguments={"x-queue-type": "classic"})
    stack.container.close()
