"""Nothing accepted is stranded, whatever the broker does.

The event log is the truth and the broker a doorbell: a message can be lost (a broker
that dropped it, the embedded transport's worker killed mid-command, a purge). The
sweeper finds commands that are accepted, retrying or running with no change for
longer than the lease, checks each against the log, and publishes it again as a
takeover: a pending one its next attempt, which takes the lease (the first delivery of
a command runs without one, and may have been lost silently), a running one its
attempt again, which runs as a new attempt and marks the silent one lost (as a broker
redelivery does). The delivery guards make a spare message harmless, so a command the
sweeper wakes needlessly still runs once.

A handler must finish within the lease (``COMMAND_LEASE_SECONDS``), or its command is
taken over while it runs; optimistic concurrency still lets only one run record an
outcome, so the cost is work done twice, never an effect done twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from application.pipeline import CommandPipeline
from application.ports import CommandTransport

logger = logging.getLogger(__name__)

BATCH = 500


class StrandedCommandSweeper:
    """Publishes again every command with no live attempt past its lease."""

    def __init__(
        self,
        pipeline: CommandPipeline,
        transport: CommandTransport,
        candidates: Callable[[datetime, int], list[UUID]],
        lease: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pipeline = pipeline
        self.transport = transport
        self.candidates = candidates
        self.lease = lease
        self.clock = clock
        # For each unfinished command this sweeper published: when it may publish it
        # again, and how many times it has.
        self._published: dict[UUID, tuple[datetime, int]] = {}

    def sweep(self) -> int:
        """Publish the stranded commands again; returns how many.

        A command is published again after one lease, then two, four and so on: one
        still waiting in a long queue is not stranded, and publishing it at every sweep
        would only lengthen the queue it waits in, so the spare messages of a command
        grow with the logarithm of its wait.
        """
        now = self.clock()
        cutoff = now - self.lease
        published = 0
        candidates = self.candidates(cutoff, BATCH)
        unfinished = set(candidates)
        self._published = {i: p for i, p in self._published.items() if i in unfinished}
        for command_id in candidates:
            not_before, times = self._published.get(command_id, (now, 0))
            if not_before > now:
                continue
            # The candidates come from a view, which may lag: the log decides.
            command = self.pipeline.get_command(command_id)
            if command is None or command.is_terminal or command.modified_on > cutoff:
                continue
            self._published[command_id] = (now + self.lease * 2**times, times + 1)
            # A takeover either way: a pending command may be running without a lease
            # (see Command.begin), so its next run takes the lease to be counted.
            attempt = command.attempt if command.status == "running" else command.attempt + 1
            self.transport.publish(command_id, attempt, takeover=True)
            logger.warning(
                "command %s was %s with no change since %s: published again",
                command_id,
                command.status,
                command.modified_on.isoformat(),
            )
            published += 1
        return published
