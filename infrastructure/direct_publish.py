"""A command's first message, sent by the process that accepted it.

The web process (and the saga runner, for the commands its sagas issue) hands each
command it has just committed to :class:`DirectPublisher`, whose thread publishes it
at once and then records in :class:`PublishedMarks` that it did. The request never
waits for the broker. The relay's safety net (``infrastructure/relay.py``) takes the
marks of the accepts it reads a grace period later, and publishes the accepts without
one: those whose process died between the commit and the publish, or could not reach
the broker. docs/design.md, "The outbox's contract", has it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore

from application import log_context
from application.ports import CommandTransport
from infrastructure import tracing

logger = logging.getLogger(__name__)

# Commands waiting for the thread, at most; past it a command is left to the relay.
CAPACITY = 10_000
# Commands published before their marks are written together, at most.
BATCH = 200
# Seconds from a publish to its mark, at most (a quarter of the grace if that is less).
MARK_EVERY = 0.5


class Marking(Protocol):
    """Where the publisher records which first messages it published."""

    def mark(self, command_ids: Sequence[UUID]) -> None:
        """Record that the first messages of ``command_ids`` are with the broker."""
        ...


class PublishedMarks:
    """The commands whose first message the accepting process published: an unlogged
    table, as a lost mark only costs a spare message (which takes the command's lease,
    so that it never runs twice without one)."""

    TABLE = "published_commands"
    CREATE = (
        "CREATE UNLOGGED TABLE IF NOT EXISTS published_commands (command_id uuid PRIMARY KEY, "
        "marked_at timestamptz NOT NULL DEFAULT now())"
    )

    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore

    def create_table(self) -> None:
        """Create the table (``boxoffice migrate``)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self.CREATE)

    def mark(self, command_ids: Sequence[UUID]) -> None:
        """Record that the first messages of ``command_ids`` are with the broker."""
        with self.datastore.get_connection() as conn:
            conn.execute(
                "INSERT INTO published_commands (command_id) SELECT unnest(%s::uuid[]) "
                "ON CONFLICT DO NOTHING",
                (list(command_ids),),
            )

    def take(self, command_ids: Sequence[UUID]) -> set[UUID]:
        """Those of ``command_ids`` that were marked, their marks removed."""
        with self.datastore.get_connection() as conn:
            rows = conn.execute(
                "DELETE FROM published_commands WHERE command_id = ANY(%s) RETURNING command_id",
                (list(command_ids),),
            ).fetchall()
        return {row["command_id"] for row in rows}

    def forget(self, older_than: float) -> int:
        """Remove the marks older than ``older_than`` seconds (of messages published after
        the safety net had passed their accepts); how many."""
        with self.datastore.get_connection() as conn:
            cursor = conn.execute(
                "DELETE FROM published_commands "
                "WHERE marked_at < now() - make_interval(secs => %s)",
                (older_than,),
            )
            return cursor.rowcount


@dataclass(frozen=True)
class _Accepted:
    command_id: UUID
    fields: dict[str, object]
    command_type: str
    traceparent: str | None
    committed: float


class DirectPublisher:
    """:class:`application.ports.Dispatch`: one thread per process publishes the commands
    handed to it, in order, then marks them published.

    A command still waiting past half of ``grace`` (the seconds after which the relay's
    safety net publishes an unmarked accept) is left to the safety net, as is one the
    broker refused: the two never both send a command's first message unless a mark
    took longer than half of ``grace`` to write.
    """

    def __init__(
        self,
        transport: Callable[[], CommandTransport],
        marks: Marking | None,
        grace: float,
        counted: Callable[[str], None] = lambda source: None,
    ) -> None:
        self._transport_factory = transport
        self._transport: CommandTransport | None = None
        self.marks = marks
        self.grace = grace
        self._counted = counted
        self._queue: queue.Queue[_Accepted | None] = queue.Queue(CAPACITY)
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def dispatch(self, command: Any) -> None:
        """Queue ``command``'s first message; never waits."""
        self._running()
        accepted = _Accepted(
            command.id,
            log_context.of_command(command),
            command.command_type,
            command.traceparent,
            time.monotonic(),
        )
        try:
            self._queue.put_nowait(accepted)
        except queue.Full:
            logger.warning("%s left to the relay: %d wait to be published", command.id, CAPACITY)

    def close(self, timeout: float = 2.0) -> None:
        """Publish what waits (for ``timeout`` seconds at most), then stop the thread."""
        thread = self._thread
        if thread is None or not thread.is_alive() or self._pid != os.getpid():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        thread.join(timeout)

    def _running(self) -> None:
        # Started on first use, in the process that uses it: a thread does not survive
        # the fork of a gunicorn or Celery worker.
        if self._pid == os.getpid() and self._thread is not None:
            return
        with self._lock:
            if self._pid != os.getpid() or self._thread is None:
                if self._pid != os.getpid():
                    self._queue = queue.Queue(CAPACITY)
                    self._transport = None
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="direct-publisher", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        unmarked: list[UUID] = []
        mark_by = 0.0
        while True:
            wait = max(mark_by - time.monotonic(), 0.0) if unmarked else None
            try:
                batch = [self._queue.get(timeout=wait)]
            except queue.Empty:
                batch = []
            while batch and len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = None in batch
            sent = self._publish([a for a in batch if a is not None])
            if sent and not unmarked:
                mark_by = time.monotonic() + min(MARK_EVERY, self.grace / 4)
            unmarked += sent
            # The marks of a while are written together: one statement for many
            # commands, still long before the safety net looks for them.
            if unmarked and (stopping or len(unmarked) >= BATCH or time.monotonic() >= mark_by):
                self._mark(unmarked)
                unmarked = []
            if stopping:
                return

    def _publish(self, batch: list[_Accepted]) -> list[UUID]:
        published: list[UUID] = []
        for accepted in batch:
            if time.monotonic() - accepted.committed > self.grace / 2:
                logger.info("%s left to the relay: not published in time", accepted.command_id)
                continue
            try:
                self._send(accepted)
            except Exception as error:  # noqa: BLE001 - the relay publishes it instead
                logger.warning(
                    "could not publish %s (%r): left to the relay", accepted.command_id, error
                )
                continue
            published.append(accepted.command_id)
        return published

    def _mark(self, published: list[UUID]) -> None:
        if self.marks is None:
            return
        try:
            self.marks.mark(published)
        except Exception as error:  # noqa: BLE001 - the relay publishes them again
            logger.warning("could not mark %d commands published: %r", len(published), error)

    def _send(self, accepted: _Accepted) -> None:
        if self._transport is None:
            self._transport = self._transport_factory()
        with (
            log_context.bound(**accepted.fields),
            tracing.span(f"publish {accepted.command_type}", accepted.traceparent),
        ):
            self._transport.publish(accepted.command_id, 1)
            logger.debug("published %s", accepted.command_id)
        self._counted("accepting_process")
