"""The stranded-command sweeper on the in-memory store.

The transport here records what would be published: the port's contract is all the
sweeper sees. Real processes and a real loss of messages are in
tests/integration/test_embedded_transport.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from application.pipeline import CommandPipeline
from application.sweeper import StrandedCommandSweeper
from tests.support.submit import create_show

LEASE = timedelta(seconds=60)


class RecordingTransport:
    def __init__(self) -> None:
        self.published: list[tuple[UUID, int, bool]] = []

    def publish(
        self, command_id: UUID, attempt: int, eta: datetime | None = None, takeover: bool = False
    ) -> None:
        self.published.append((command_id, attempt, takeover))


def accept(pipeline: CommandPipeline, name: str) -> UUID:
    return create_show(pipeline, name, 100).command.id


def test_stranded_commands_are_published_again_after_one_two_four_leases(
    pipeline: CommandPipeline,
) -> None:
    waiting = accept(pipeline, "waiting")
    running = accept(pipeline, "running")
    done = accept(pipeline, "done")
    command = pipeline.get_command(running)
    assert command is not None
    command.start("a worker that then died")
    pipeline.app.save(command)
    pipeline.execute(done, 1, "worker")
    transport = RecordingTransport()
    now = datetime.now(UTC)
    sweeper = StrandedCommandSweeper(
        pipeline,
        transport,
        candidates=lambda cutoff, limit: [waiting, running, done],
        lease=LEASE,
        clock=lambda: now,
    )

    assert sweeper.sweep() == 0  # nothing is older than the lease yet
    now += LEASE + timedelta(seconds=1)
    assert sweeper.sweep() == 2
    # Both as takeovers: the waiting one may be running without a lease.
    assert transport.published == [(waiting, 1, True), (running, 1, True)]

    now += timedelta(seconds=5)
    assert sweeper.sweep() == 0  # published a moment ago: perhaps only queued
    now += LEASE
    assert sweeper.sweep() == 2  # one lease after the first
    now += LEASE + timedelta(seconds=1)
    assert sweeper.sweep() == 0  # the next one waits two
    now += LEASE
    assert sweeper.sweep() == 2
    assert len(transport.published) == 6
