"""The embedded default's server-less transport, across real worker and relay processes.

A torn or malformed message file in the queue folder (what kombu's own filesystem
transport left when a consumer read a message before its writer finished) is dropped
with an error in the log; the worker keeps running and every command still succeeds.
A message that is lost for good, with the file or with a worker killed mid-command
(this transport never redelivers), is published again by the relay's sweeper once the
command has had no change for a lease.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import Stack
from tests.support.processes import ROOT, ServiceProcess, running, wait_until

pytestmark = [pytest.mark.postgres]

LEASE = 3.0


def test_a_torn_message_is_dropped_and_the_worker_carries_on(
    database_url: str, tmp_path: Path
) -> None:
    var = tmp_path / "var"
    queue = f"embedded.{uuid.uuid4().hex[:8]}"
    stack = Stack(database_url, "filesystem://", queue, tmp_path, var_dir=var)
    parts = [
        stack.process(p, BROKER_URL="filesystem://", BOXOFFICE_VAR_DIR=str(var))
        for p in ("worker", "relay")
    ]
    folder = var / "broker" / "queue"
    with running(*parts):
        first = stack.submit("Bump", key="warm-up").command.id
        assert stack.outcome(first).status == "succeeded"
        # A message file that exists but holds nothing, and one that holds no JSON.
        (folder / f"0_{uuid.uuid4()}.{queue}.msg").write_bytes(b"")
        (folder / f"1_{uuid.uuid4()}.{queue}.msg").write_bytes(b'{"body": "tor')

        ids = [stack.submit("Bump", key=f"k{i}").command.id for i in range(20)]

        assert [stack.outcome(i).status for i in ids] == ["succeeded"] * 20
        worker = parts[0]
        assert worker.process is not None
        assert worker.process.poll() is None, worker.output()[-3000:]
        assert "dropped an unreadable message" in worker.output()
    # Every file of the transport stays under the var folder, none in the working dir.
    assert list((var / "broker" / "control").glob("*.exchange"))
    assert not (ROOT / "control").exists()
    stack.container.close()


def embedded_parts(stack: Stack, var: Path, *names: str) -> list[ServiceProcess]:
    env = {"BROKER_URL": "filesystem://", "BOXOFFICE_VAR_DIR": str(var)}
    return [
        stack.process(p, name=f"{p}-{i}", **env, COMMAND_LEASE_SECONDS=str(LEASE))
        for i, p in enumerate(names)
    ]


def test_a_command_whose_message_was_lost_is_published_again_past_its_lease(
    database_url: str, tmp_path: Path
) -> None:
    var = tmp_path / "var"
    queue = f"lost.{uuid.uuid4().hex[:8]}"
    stack = Stack(database_url, "filesystem://", queue, tmp_path, var_dir=var)
    relay, projector, worker = embedded_parts(stack, var, "relay", "projector", "worker")
    with running(relay, projector):
        command_id = stack.submit("Bump", key="lost").command.id
        folder = var / "broker" / "queue"
        wait_until(lambda: any(folder.glob("*.msg")), 10, "the accept's publish")
        for message in folder.glob("*.msg"):
            message.unlink()  # the broker lost it

        with running(worker):
            command = stack.outcome(command_id, timeout=LEASE * 4 + 10)

    assert command.status == "succeeded"
    assert "published again" in relay.output()
    stack.container.close()


def test_a_command_whose_worker_died_mid_run_is_taken_over_past_its_lease(
    database_url: str, tmp_path: Path
) -> None:
    var = tmp_path / "var"
    queue = f"died.{uuid.uuid4().hex[:8]}"
    stack = Stack(database_url, "filesystem://", queue, tmp_path, var_dir=var)
    relay, projector, doomed, spare = embedded_parts(
        stack, var, "relay", "projector", "worker", "worker"
    )
    started = tmp_path / "started"
    with running(relay, projector, doomed):
        command_id = stack.submit("Bump", key="died", nap=1.5, started_file=str(started)).command.id
        wait_until(started.exists, 15, "the run to start")
        doomed.kill()  # mid-nap: the filesystem transport never redelivers

        with running(spare):
            command = stack.outcome(command_id, timeout=LEASE * 4 + 15)

    assert command.status == "succeeded"
    # The sweeper's takeover ran it again, under a lease; the first run, which had
    # none, is not counted (docs/decisions.md, "A first run without a lease").
    assert [a["outcome"] for a in command.attempts] == ["succeeded"]
    assert len(started.read_text().splitlines()) == 2
    stack.container.close()
