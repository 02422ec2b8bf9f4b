"""The guarantees of docs/design.md §2, each against PostgreSQL, RabbitMQ and Celery workers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import kombu
import psycopg
import pytest
from kombu.exceptions import ChannelError, OperationalError

from application.ports import Undispatched
from infrastructure.celery_app import CeleryCommandTransport
from infrastructure.log_recorder import TransactionOrderedRecorder
from tests.integration.conftest import Stack
from tests.support.commands import Tally
from tests.support.processes import ROOT, running, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def queued_messages(broker_url: str, queue: str) -> int:
    """Messages ready in ``queue``, as RabbitMQ itself counts them."""
    with kombu.Connection(broker_url) as connection:
        channel: Any = connection.channel()
        try:
            _, count, _ = channel.queue_declare(queue=queue, passive=True)
        except (ChannelError, OperationalError):
            return 0
        return int(count)


def rows(database_url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, params).fetchall()


def tally(stack: Stack, key: str) -> int:
    found: Tally = stack.container.app.repository.get(Tally.create_id(key))
    return found.count


def test_migrate_creates_the_tables_and_commands_land_in_postgres(stack: Stack) -> None:
    acceptance = stack.submit("Bump", "k1", key="t")

    tables = {
        r[0]
        for r in rows(
            stack.database_url,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
        )
    }
    assert {"boxoffice_events", "relay_tracking"} <= tables
    stored = rows(
        stack.database_url,
        "SELECT topic FROM boxoffice_events WHERE originator_id = %s",
        acceptance.command.id,
    )
    assert stored == [("application.command:Command.CommandAccepted",)]


def test_the_accepting_process_publishes_each_command_it_accepts(stack: Stack) -> None:
    for i in range(3):
        stack.submit("Bump", f"k{i}", key=f"t{i}")

    # No relay runs: the test's process, which accepted them, published them.
    wait_until(lambda: queued_messages(stack.broker_url, stack.queue) == 3, 30, "3 messages")


def test_the_relay_publishes_accepts_left_unpublished_and_tracks_its_position(
    stack: Stack,
) -> None:
    # Commands accepted by a process that died right after each write, before it
    # published anything.
    stack.container.pipeline.dispatcher = Undispatched()
    for i in range(3):
        stack.submit("Bump", f"k{i}", key=f"t{i}")
    assert queued_messages(stack.broker_url, stack.queue) == 0

    with running(stack.process("relay", PUBLISH_GRACE_SECONDS="0.5")):
        wait_until(lambda: queued_messages(stack.broker_url, stack.queue) == 3, 30, "3 messages")
        head = rows(stack.database_url, "SELECT max(notification_id) FROM boxoffice_events")
        wait_until(
            lambda: (
                rows(
                    stack.database_url,
                    "SELECT notification_id FROM relay_net_tracking WHERE application_name = %s",
                    "Boxoffice",
                )
                == head
            ),
            10,
            "the safety net's tracking position",
        )


def test_a_command_runs_on_a_worker_and_its_events_are_in_the_store(stack: Stack) -> None:
    with running(stack.process("relay"), stack.process("worker")):
        acceptance = stack.submit("Bump", "k1", key="t")
        command = stack.outcome(acceptance.command.id)

    assert command.status == "succeeded"
    assert command.attempts[0]["worker"].endswith(tuple("0123456789"))
    assert tally(stack, "t") == 1
    topics = rows(
        stack.database_url,
        "SELECT topic FROM boxoffice_events ORDER BY notification_id",
    )
    assert [str(t[0]).rsplit(".", 1)[-1] for t in topics] == [
        "CommandAccepted",
        "TallyOpened",
        "TallyBumped",
        "CommandSucceeded",
    ]


def test_duplicate_messages_execute_the_command_once(stack: Stack) -> None:
    worker = stack.process("worker")
    with running(stack.process("relay"), worker):
        acceptance = stack.submit("Bump", "k1", key="t")
        transport = CeleryCommandTransport(stack.container.celery)
        # The same message twice more, as a broker or relay might redeliver it.
        transport.publish(acceptance.command.id, 1)
        transport.publish(acceptance.command.id, 1)
        stack.outcome(acceptance.command.id)
        wait_until(lambda: worker.output().count(": skipped") == 2, 30, "2 skipped deliveries")

    assert tally(stack, "t") == 1
    assert len(stack.command(acceptance.command.id).attempts) == 1


def test_a_worker_killed_mid_command_loses_nothing_and_applies_once(
    stack: Stack, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    with running(stack.process("relay"), stack.process("worker", WORKER_CONCURRENCY="1")):
        acceptance = stack.submit("Bump", "k1", key="t", nap=3.0, started_file=str(started))
        command_id = acceptance.command.id
        # The first delivery runs without a lease: its sign of life is the handler's.
        wait_until(started.exists, 30, "the first run")
        os.kill(int(started.read_text().split()[0]), signal.SIGKILL)
        # RabbitMQ redelivers; the redelivery takes the lease before it runs.
        wait_until(lambda: stack.command(command_id).status == "running", 30, "the lease")
        wait_until(lambda: len(started.read_text().split()) == 2, 30, "the leased run")
        child_pid = int(stack.command(command_id).attempts[-1]["worker"].rsplit(":", 1)[1])
        assert child_pid == int(started.read_text().split()[1])

        os.kill(child_pid, signal.SIGKILL)  # the pool process running the leased attempt

        command = stack.outcome(command_id, timeout=60)

    assert command.status == "succeeded"
    # The leased attempt's loss is counted; the first run, which had no lease, is not.
    assert [a["outcome"] for a in command.attempts] == ["lost", "succeeded"]
    assert len(started.read_text().splitlines()) == 3
    assert tally(stack, "t") == 1


def test_concurrent_commands_on_one_aggregate_lose_no_update(stack: Stack) -> None:
    workers = [
        stack.process("worker", name=f"worker{i}", COMMAND_MAX_ATTEMPTS="20") for i in (1, 2)
    ]
    with running(stack.process("relay"), *workers):
        acceptances = [stack.submit("Bump", f"k{i}", key="shared") for i in range(20)]
        outcomes = [stack.outcome(a.command.id, timeout=60) for a in acceptances]

    assert {c.status for c in outcomes} == {"succeeded"}
    assert tally(stack, "shared") == 20


def test_two_workers_on_one_host_each_start_under_their_own_name_and_both_work(
    stack: Stack,
) -> None:
    workers = [stack.process("worker", name=f"worker{i}", WORKER_CONCURRENCY="1") for i in (1, 2)]
    with running(stack.process("relay"), *workers):
        for worker in workers:
            worker.wait_for_output("ready.")
        acceptances = [stack.submit("Bump", key=f"w{i}", nap=0.2) for i in range(12)]
        outcomes = [stack.outcome(a.command.id, timeout=60) for a in acceptances]
        alive = [w.process is not None and w.process.poll() is None for w in workers]

    assert {c.status for c in outcomes} == {"succeeded"}
    assert alive == [True, True]
    names = {re.search(r"(boxoffice-\d+@\S+) ready", w.output()).group(1) for w in workers}  # type: ignore[union-attr]
    assert len(names) == 2
    assert all(": succeeded" in w.output() for w in workers)


def test_a_domain_error_fails_the_command_without_retry(stack: Stack) -> None:
    with running(stack.process("relay"), stack.process("worker")):
        acceptance = stack.submit("Bump", "k1", key="t", refuse=True)
        command = stack.outcome(acceptance.command.id)

    assert command.status == "failed"
    assert len(command.attempts) == 1
    assert command.error is not None
    assert command.error["type"] == "RefusedError"


def test_technical_errors_retry_with_backoff_until_success(stack: Stack, tmp_path: Path) -> None:
    with running(stack.process("relay"), stack.process("worker")):
        acceptance = stack.submit(
            "Flaky", "k1", key="t", failures=2, attempts_file=str(tmp_path / "n")
        )
        command = stack.outcome(acceptance.command.id)

    assert command.status == "succeeded"
    assert [a["outcome"] for a in command.attempts] == [
        "retry_scheduled",
        "retry_scheduled",
        "succeeded",
    ]
    assert tally(stack, "t") == 1


def test_exhausted_retries_dead_letter_with_context_and_a_redrive_completes_it(
    stack: Stack, tmp_path: Path
) -> None:
    with running(stack.process("relay"), stack.process("worker")):
        acceptance = stack.submit(
            "Flaky", "k1", key="t", failures=3, attempts_file=str(tmp_path / "n")
        )
        command_id: UUID = acceptance.command.id
        dead = stack.outcome(command_id)
        assert dead.status == "dead_lettered"
        assert len(dead.attempts) == 3
        assert all("ConnectionError" in a["error"]["traceback"] for a in dead.attempts)

        redrive = subprocess.run(
            [sys.executable, "-m", "interfaces.cli.main", "commands", "redrive", str(command_id)],
            env=stack.env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert redrive.returncode == 0, redrive.stderr
        wait_until(lambda: stack.command(command_id).status == "succeeded", 30, "success")

    assert tally(stack, "t") == 1
    assert len(stack.command(command_id).attempts) == 4


def test_a_command_whose_notify_is_lost_is_still_relayed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = stack.process("relay")
    with running(relay, stack.process("worker")):
        relay.wait_for_output("relay publishing")
        # This process's writes now send no NOTIFY, as if the notification were lost.
        monkeypatch.setattr(TransactionOrderedRecorder, "_notify", lambda *_: None)
        acceptance = stack.submit("Bump", "k1", key="t")
        command = stack.outcome(acceptance.command.id, timeout=15)

    assert command.status == "succeeded"


def test_a_relay_killed_mid_stream_publishes_everything_after_restart(stack: Stack) -> None:
    acceptances = [stack.submit("Bump", f"k{i}", key=f"t{i}") for i in range(100)]
    relay = stack.process("relay")
    with running(relay):
        wait_until(lambda: queued_messages(stack.broker_url, stack.queue) >= 10, 30, "publishing")
    relay.kill()  # SIGKILL wherever it is: before, during or after a publish or its tracking

    with running(stack.process("relay", name="relay-again"), stack.process("worker")):
        outcomes = [stack.outcome(a.command.id, timeout=60) for a in acceptances]

    assert {c.status for c in outcomes} == {"succeeded"}
    assert all(tally(stack, f"t{i}") == 1 for i in range(100))
