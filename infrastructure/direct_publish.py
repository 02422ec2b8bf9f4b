"""A command's first message, sent by the process that accepted it.

The web process (and the saga runner, for the commands its sagas issue) hands each
command it has just committed to :class:`DirectPublisher`, which publishes it in the
same thread, with the broker's confirm, and has :class:`PublishedMarks` record that it
did. The relay's safety net (``infrastructure/relay.py``) takes the marks of the
accepts it reads a grace period later, and publishes the accepts without one: those
whose process died between the commit and the publish, or could not reach the broker.
docs/design.md, "The outbox's contract", has it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore

from application import log_context
from application.ports import CommandTransport
from infrastructure import tracing

logger = logging.getLogger(__name__)

# Marks written in one statement, at most.
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


class DirectPublisher:
    """:class:`application.ports.Dispatch`: publishes a command's first message in the
    thread that accepted it, right after the commit (each of a web process's request
    threads with a connection of its own from Celery's pool: no queue to fall behind
    in), and has its marks written together by a thread of its own.

    A message the broker refused is left to the relay's safety net, and so is every
    message for the next half of ``grace`` after it (the broker is away: an accept does
    not wait on it again and again). A message whose publish took longer than half of
    ``grace`` is not marked: the safety net sends it again, as a takeover, so that a
    command never runs twice without its lease.
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
        self._lock = threading.Lock()
        self._unmarked: list[UUID] = []
        self._due = threading.Event()
        self._resume_at = 0.0
        self._marker: threading.Thread | None = None
        self._pid = 0
        self._stopped = threading.Event()

    def dispatch(self, command: Any) -> None:
        """Publish ``command``'s first message now; never raises."""
        began = time.monotonic()
        if began < self._resume_at:
            return  # the broker failed a publish lately: the safety net sends it
        try:
            self._send(command)
        except Exception as error:  # noqa: BLE001 - the relay publishes it instead
            self._resume_at = time.monotonic() + self.grace / 2
            logger.warning(
                "could not publish %s (%r): left to the relay, as is every accept of the next %g s",
                command.id,
                error,
                self.grace / 2,
            )
            return
        if time.monotonic() - began > self.grace / 2:
            logger.info("%s published late: the relay publishes it again", command.id)
            return
        self._to_mark(command.id)

    def close(self, timeout: float = 2.0) -> None:
        """Write the marks not written yet, and stop the marking thread."""
        marker = self._marker
        if marker is None or self._pid != os.getpid():
            return
        self._stopped.set()
        self._due.set()
        marker.join(timeout)

    def _send(self, command: Any) -> None:
        if self._transport is None:
            self._transport = self._transport_factory()
        with (
            log_context.bound(**log_context.of_command(command)),
            tracing.span(f"publish {command.command_type}", command.traceparent, kind="producer"),
        ):
            self._transport.publish(command.id, 1)
            logger.debug("published %s", command.id)
        self._counted("accepting_process")

    def _to_mark(self, command_id: UUID) -> None:
        if self.marks is None:
            return
        with self._lock:
            if self._marker is None or self._pid != os.getpid():
                # Started on first use, in the process that uses it: a thread does not
                # survive the fork of a gunicorn or Celery worker.
                self._pid = os.getpid()
                self._unmarked = []
                self._stopped = threading.Event()
                self._marker = threading.Thread(target=self._mark, name="marks", daemon=True)
                self._marker.start()
            self._unmarked.append(command_id)
            if len(self._unmarked) >= BATCH:
                self._due.set()

    def _mark(self) -> None:
        # The marks of a while are written together: one statement for many commands,
        # still long before the safety net looks for them.
        every = min(MARK_EVERY, self.grace / 4)
        while not self._stopped.is_set():
            self._due.wait(every)
            self._due.clear()
            self._write_marks()
        self._write_marks()

    def _write_marks(self) -> None:
        with self._lock:
            unmarked, self._unmarked = self._unmarked, []
        if not unmarked or self.marks is None:
            return
        try:
            self.marks.mark(unmarked)
        except Exception as error:  # noqa: BLE001 - the relay publishes them again
            logger.warning("could not mark %d commands published: %r", len(unmarked), error)
