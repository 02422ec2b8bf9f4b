"""The event log's recorder: writers commit concurrently, followers still skip nothing.

eventsourcing's PostgreSQL recorder gives each event a number from a sequence and, so
that a follower never reads past a number whose transaction commits later, takes an
EXCLUSIVE lock on the table in every write and holds it through the commit, and sends
its NOTIFY inside the transaction (which PostgreSQL serializes at commit too). With
durable commits every write of every process then waits for the WAL flush of the one
before: that was the wall of the throughput profile (``docs/throughput.md``).

:class:`TransactionOrderedRecorder` keeps the followers' guarantee another way:

- An event's notification id is its transaction's id (``pg_current_xact_id()``) times
  2**16 plus its place in the transaction. Ids therefore follow the order in which the
  writing transactions started writing, with no lock and no sequence.
- A read of the log returns only events whose transaction id is below the ``xmin`` of
  the read's own snapshot: every transaction below it has ended, so any event with a
  smaller id is already visible or will never exist. Events of transactions still in
  flight wait behind that horizon until those end.
- The NOTIFY is sent after the commit, in its own tiny transaction, so the writes'
  commits overlap and PostgreSQL flushes many with one fsync. It carries the topics
  written, so a follower wakes only for events it follows.

Ids are sparse (gaps between transactions); nothing in the service does arithmetic on
them. A transaction writes at most 65,535 events.

Accepts (saves of one event given ``grouped``) made at the same time by one process's
threads are written in one statement, one transaction and one notification
(:class:`~infrastructure.group_commit.GroupCommit`), once :meth:`group_commits` is
called: the accept rate then stops being a commit and a notification per request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier, Literal

from application.event_log import AggregatePresentError
from infrastructure.group_commit import GroupCommit

# Bits of a notification id left for an event's place within its transaction.
PLACE_BITS = 16
MAX_EVENTS_PER_TRANSACTION = 2**PLACE_BITS - 1
# PostgreSQL's limit on a notification's payload is 8,000 bytes.
MAX_PAYLOAD_BYTES = 7_900
# The first id no reader may return yet: transactions from the snapshot's xmin on may
# still be writing.
HORIZON = SQL("(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << {0})").format(
    Literal(PLACE_BITS)
)

log = logging.getLogger(__name__)


def wake_payload(topics: Sequence[str], originators: Sequence[str] = ()) -> str:
    """A notification's payload: the topics just recorded, so that a follower of other
    topics sleeps on, then on a second line the aggregates written, so that a follower
    of a few aggregates (a web process's command watcher) sleeps on too. The aggregates
    are left out when they would not fit, and everything (wake everyone) when the
    topics would not."""
    payload = " ".join(topics)
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        return ""
    named = f"{payload}\n{' '.join(originators)}"
    return named if originators and len(named.encode()) <= MAX_PAYLOAD_BYTES else payload


def wakes(
    payload: str, topics: AbstractSet[str], concerns: Callable[[str], bool] | None = None
) -> bool:
    """Whether a notification with ``payload`` concerns a follower of ``topics`` (all
    topics when empty) that, given ``concerns``, follows only the aggregates whose ids
    it holds true for. What the payload does not say wakes the follower."""
    recorded, _, originators = payload.partition("\n")
    if topics and recorded and topics.isdisjoint(recorded.split(" ")):
        return False
    if concerns is None or not originators:
        return True
    return any(concerns(originator) for originator in originators.split(" "))


@dataclass(frozen=True)
class Followed:
    """What one read of the log gives a follower."""

    notifications: list[Notification]
    # Every event of the follower's topics up to here is in ``notifications``.
    seen: int
    # Committed events wait behind a transaction still in flight: look again soon.
    held_back: bool


class TooManyEventsError(ValueError):
    """One save tried to record more events than a transaction may number."""


class LogAheadOfTransactionIdsError(RuntimeError):
    """The log holds ids at or above those this cluster's next transactions would get.

    It happens when the database was restored into another cluster from a logical dump
    (``pg_dump``), whose transaction ids start again from the beginning: new events
    would get smaller ids than old ones, and followers, already past them, would never
    see them. Restore physically (``pg_basebackup`` or a file-system copy), which keeps
    the transaction ids.
    """


# A grouped write: its one event, and the aggregate that must have none (or None).
GroupedWrite = tuple[StoredEvent, UUID | None]


class TransactionOrderedRecorder(PostgresApplicationRecorder):
    """An application recorder whose writers do not serialize (see the module).

    It :class:`~application.event_log.GuardsAbsence`: a write given ``absent`` inserts
    only if that aggregate has no events, in the same statement. It
    :class:`~application.event_log.GroupsCommits` once :meth:`group_commits` is called.
    """

    guards_absence = True
    groups_commits = True
    # Run first in every write's transaction when a lease holder writes (the saga
    # runner: infrastructure/lease.py); it fails the write of one that lost its lease.
    fence: Callable[[Cursor[DictRow]], None] | None = None

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        if datastore.enable_db_functions:
            # eventsourcing's insert function numbers events from the sequence.
            msg = "POSTGRES_ENABLE_DB_FUNCTIONS is not supported by this recorder"
            raise ValueError(msg)
        names = {
            "schema": Identifier(self.datastore.schema),
            "table": Identifier(self.events_table_name),
            "stored_event_type": Identifier(self.stored_event_type_name),
            "bits": Literal(PLACE_BITS),
            "horizon": HORIZON,
        }
        # Reads of a few topics after a position (a view's first unapplied event, a
        # follower of rare topics) walk only the events of those topics.
        self.sql_create_statements.append(
            SQL(
                "CREATE INDEX IF NOT EXISTS {index} ON {schema}.{table} (topic, notification_id)"
            ).format(index=Identifier(f"{self.events_table_name}_topic_idx"), **names)
        )
        # The rows of a write, numbered by their transaction's id and their place.
        insert = (
            "INSERT INTO {schema}.{table} AS t "
            "(originator_id, originator_version, topic, state, notification_id) "
            "SELECT e.originator_id, e.originator_version, e.topic, e.state, "
            "(pg_current_xact_id()::text::bigint << {bits}) + e.place "
            "FROM unnest(%s::{schema}.{stored_event_type}[]) WITH ORDINALITY "
            "AS e(originator_id, originator_version, topic, state, place) "
        )
        numbered = "ORDER BY e.place RETURNING notification_id"
        self.insert_events_statement = SQL(insert + numbered).format(**names)
        # The same, only while an aggregate has no events: an accept that creates looks
        # for its target in its own write, not in a read before it.
        self._insert_unless_present_statement = SQL(
            insert
            + "WHERE NOT EXISTS (SELECT FROM {schema}.{table} WHERE originator_id = %s) "
            + numbered
        ).format(**names)
        # The settled events after a position (topics, order and limit added per read).
        self._select_statement = SQL(
            "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, "
            "e.state FROM {schema}.{table} e "
            "WHERE e.notification_id > %s AND e.notification_id < {horizon}"
        ).format(**names)
        # The same with the head and whether events wait behind the horizon: one
        # statement, so that one snapshot gives the rows, the head and the horizon.
        self._follow_statement = (
            SQL(
                "SELECT h.head, h.held_back, e.* FROM (SELECT "
                "(SELECT notification_id FROM {schema}.{table} WHERE notification_id < {horizon} "
                "ORDER BY notification_id DESC LIMIT 1) AS head, "
                # Not EXISTS (... >= horizon): the planner cannot estimate the horizon
                # and scans the whole table for a row that is usually not there; the
                # greatest id is one step down the index.
                "COALESCE((SELECT max(notification_id) FROM {schema}.{table}) >= {horizon}, "
                "false) AS held_back) h LEFT JOIN LATERAL ("
            ).format(**names)
            + self._select_statement
        )
        self.max_notification_id_statement = SQL(
            "SELECT max(notification_id) FROM {schema}.{table} WHERE notification_id < {horizon}"
        ).format(**names)
        # Many writes of one event each, in one statement: a write whose aggregate
        # version is taken, or whose ``absent`` aggregate has events, is left out (and
        # then written alone, to raise its own error).
        self._insert_group_statement = SQL(
            insert
            + "JOIN unnest(%s::uuid[]) WITH ORDINALITY AS a(absent, place) ON a.place = e.place "
            + "WHERE a.absent IS NULL OR NOT EXISTS "
            + "(SELECT FROM {schema}.{table} WHERE originator_id = a.absent) "
            + "ORDER BY e.place ON CONFLICT DO NOTHING RETURNING notification_id"
        ).format(**names)
        self._group: GroupCommit[GroupedWrite, int] | None = None
        self._notify_statement = SQL("SELECT pg_notify(%s, %s)")
        # The follow statement as sent, by (topics given, closed): see _select.
        self._composed: dict[tuple[bool, bool], bytes] = {}
        self._events_of_statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {schema}.{table} WHERE originator_id = ANY(%s) "
            "AND (cardinality(%s::text[]) = 0 OR topic = ANY(%s)) "
            "ORDER BY originator_id, originator_version"
        ).format(**names)
        self._count_after_statement = SQL(
            "SELECT count(*) AS n FROM (SELECT FROM {schema}.{table} "
            "WHERE notification_id > %s AND (cardinality(%s::text[]) = 0 OR topic = ANY(%s)) "
            "LIMIT %s) pending"
        ).format(**names)
        self._transaction_statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {schema}.{table} WHERE notification_id >= (%s >> {bits}) << {bits} "
            "AND notification_id < ((%s >> {bits}) + 1) << {bits} ORDER BY notification_id"
        ).format(**names)

    def check_ids_ahead(self) -> None:
        """Raise :class:`LogAheadOfTransactionIdsError` unless the next transaction's
        events would get ids above every id in the log."""
        statement = SQL(
            "SELECT (SELECT max(notification_id) FROM {0}.{1}) AS head, "
            "pg_current_xact_id()::text::bigint << {2} AS next"
        ).format(
            Identifier(self.datastore.schema),
            Identifier(self.events_table_name),
            Literal(PLACE_BITS),
        )
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement)
            row = curs.fetchone()
        if row is not None and row["head"] is not None and row["head"] >= row["next"]:
            msg = (
                f"the log's last id {row['head']} is not below {row['next']}, the first id "
                "of this cluster's next transaction: was it restored from a logical dump?"
            )
            raise LogAheadOfTransactionIdsError(msg)

    def group_commits(self, max_group: int) -> None:
        """Write up to ``max_group`` concurrent grouped saves of this process in one
        transaction (1: each alone)."""
        self._group = GroupCommit(self._write_group, max_group) if max_group > 1 else None

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Record ``stored_events`` atomically, then wake the followers.

        The library's write less its lock, as one statement (atomic on its own), with
        the notification sent on the same connection once it has committed. A save of
        one event given ``grouped`` may share its statement with other such saves of
        the process (:meth:`group_commits`); it returns once that has committed.
        """
        grouped = kwargs.pop("grouped", False)
        group = self._group
        if grouped and group is not None and len(stored_events) == 1 and self.fence is None:
            return [group.write((stored_events[0], kwargs.get("absent")))]
        if len(stored_events) > MAX_EVENTS_PER_TRANSACTION:
            msg = (
                f"{len(stored_events)} events in one save; "
                f"at most {MAX_EVENTS_PER_TRANSACTION} fit in one transaction"
            )
            raise TooManyEventsError(msg)
        with self.datastore.get_connection() as conn:
            ids = self._write(conn, stored_events, **kwargs)
            self._notify(conn, stored_events)
        return ids

    def _write(
        self, conn: psycopg.Connection[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return None
        # The pool's connections are in autocommit mode: the INSERT commits on its own,
        # where an explicit transaction would add a round trip for BEGIN and another for
        # COMMIT (a third of a save's time, and of its client's CPU).
        absent: UUID | None = kwargs.pop("absent", None)
        fence = self.fence
        with (
            conn.transaction() if fence is not None or not conn.autocommit else nullcontext(),
            conn.cursor() as curs,
        ):
            if fence is not None:
                fence(curs)
            if absent is None:
                self._insert_stored_events(curs, stored_events, **kwargs)
            else:
                curs.execute(
                    self._insert_unless_present_statement,
                    ([self._pg_stored_event(event) for event in stored_events], absent),
                )
            ids: Sequence[int] | None = self._fetch_ids_after_insert_events(
                curs, stored_events, **kwargs
            )
        if absent is not None and not ids:
            raise AggregatePresentError(absent)
        return ids

    def _write_group(self, writes: Sequence[GroupedWrite]) -> list[int | BaseException]:
        """Record ``writes`` in one statement, then wake the followers once; each
        write's notification id, or the error its write alone raises (a taken version,
        a present aggregate)."""
        with self.datastore.get_connection() as conn:
            with conn.transaction() if not conn.autocommit else nullcontext():
                rows = conn.execute(
                    self._insert_group_statement,
                    (
                        [self._pg_stored_event(event) for event, _ in writes],
                        [absent for _, absent in writes],
                    ),
                ).fetchall()
            # A write's place in the statement is the low bits of its id.
            ids = {
                row["notification_id"] & MAX_EVENTS_PER_TRANSACTION: row["notification_id"]
                for row in rows
            }
            outcomes = [
                ids[place] if place in ids else self._write_alone(conn, event, absent)
                for place, (event, absent) in enumerate(writes, start=1)
            ]
            recorded = [
                event
                for (event, _), outcome in zip(writes, outcomes, strict=True)
                if isinstance(outcome, int)
            ]
            self._notify(conn, recorded)
        return outcomes

    def _write_alone(
        self, conn: psycopg.Connection[DictRow], event: StoredEvent, absent: UUID | None
    ) -> int | BaseException:
        """A write its group left out, alone: its id, or the error it raises (as the
        event store raises it)."""
        try:
            ids = self._write(conn, [event], absent=absent)
        except AggregatePresentError as present:
            return present
        except psycopg.IntegrityError as taken:
            return IntegrityError(str(taken))
        except psycopg.Error as failed:
            return OperationalError(str(failed))
        return ids[0] if ids else OperationalError("a grouped write recorded nothing")

    def _pg_stored_event(self, event: StoredEvent) -> Any:
        return self.construct_pg_stored_event(
            event.originator_id, event.originator_version, event.topic, event.state
        )

    def _lock_table(self, curs: Cursor[DictRow]) -> None:
        """No lock: the ids' order comes from the transaction ids (see the module)."""

    def _notify_channel(self, curs: Cursor[DictRow]) -> None:
        """Not inside the write: a NOTIFY in a transaction serializes its commit."""

    def _notify(self, conn: psycopg.Connection[DictRow], recorded: Sequence[StoredEvent]) -> None:
        """Wake the followers of the topics and aggregates of ``recorded`` (if any)."""
        if not recorded:
            return
        topics = sorted({event.topic for event in recorded})
        originators = sorted({str(event.originator_id) for event in recorded})
        # Best effort: the events are committed whatever happens here, and followers
        # pull at least every second without a notification. Never raised: a retry of
        # the whole write would meet its own events and report a failure.
        try:
            conn.execute(
                self._notify_statement, (self.channel_name, wake_payload(topics, originators))
            )
        except (psycopg.Error, InterfaceError, OperationalError) as failed:
            log.warning("events recorded, notification not sent: %s", failed)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def follow(self, after: int, limit: int, topics: Sequence[str] = ()) -> Followed:
        """The settled notifications after ``after`` (of ``topics``, ``limit`` at most),
        how far they cover the log, and whether newer events wait behind the horizon.

        A follower of a few topics resumes from ``seen``, not from its last event: it
        would otherwise read again, on every wake, every event of other topics since.
        """
        rows = self._select(
            self._follow_statement, [after], topics, limit, SQL(") e ON true"), reused=True
        )
        head, held_back = rows[0]["head"], rows[0]["held_back"]
        notifications = [_notification(row) for row in rows if row["notification_id"] is not None]
        seen = notifications[-1].id if len(notifications) == limit else max(after, head or 0)
        return Followed(notifications, seen, held_back)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """The settled notifications from ``start`` (up to ``stop``), ``limit`` at most."""
        statement: Composed = self._select_statement
        after = (start or 0) - (1 if inclusive_of_start and start is not None else 0)
        params: list[Any] = [after]
        if stop is not None:
            statement += SQL(" AND e.notification_id <= %s")
            params.append(stop)
        return [_notification(row) for row in self._select(statement, params, topics, limit)]

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def count_after(self, after: int, topics: Sequence[str], cap: int) -> int:
        """How many events (of ``topics`` only, if given) the log holds after position
        ``after``, counted up to ``cap``: one row back, not the events."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._count_after_statement, [after, list(topics), list(topics), cap])
            row = curs.fetchone()
        return int(row["n"]) if row else 0

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_events_of(
        self, originator_ids: Sequence[UUID], topics: Sequence[str] = ()
    ) -> list[Notification]:
        """Every event of these aggregates (of ``topics`` only, if given), each
        aggregate's in version order: one read for many aggregates (a replay reads
        thousands)."""
        params = [list(originator_ids), list(topics), list(topics)]
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._events_of_statement, params, prepare=True)
            return [_notification(row) for row in curs.fetchall()]

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_transaction_of(self, notification_id: int) -> list[Notification]:
        """The events saved in one transaction with the event at ``notification_id``
        (its id carries its transaction's)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._transaction_statement, [notification_id, notification_id])
            return [_notification(row) for row in curs.fetchall()]

    def _select(
        self,
        statement: Composed,
        params: list[Any],
        topics: Sequence[str],
        limit: int,
        close: SQL | None = None,
        *,
        reused: bool = False,
    ) -> list[DictRow]:
        """The rows of ``statement`` (events after a position), of ``topics`` only if
        given, in log order, ``limit`` at most; ``close`` ends the statement. A
        ``reused`` statement (every follower's every pull) is composed once."""
        key = (bool(topics), close is not None)
        query: Composed | bytes | None = self._composed.get(key) if reused else None
        if query is None:
            if topics:
                # Binary: a text array's dumper escapes every topic with a regular
                # expression, at every pull of every follower.
                statement += SQL(" AND e.topic = ANY(%b)")
            statement += SQL(" ORDER BY e.notification_id LIMIT %s")
            if close is not None:
                statement += close
            query = statement
        if topics:
            params.append(list(topics))
        params.append(limit)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            if reused and key not in self._composed:
                query = self._composed[key] = statement.as_bytes(conn)
            curs.execute(query, params, prepare=True)
            return curs.fetchall()


def _notification(row: DictRow) -> Notification:
    return Notification(
        id=row["notification_id"],
        originator_id=row["originator_id"],
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=bytes(row["state"]),
    )
