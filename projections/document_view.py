"""Materialized views: one JSON document per aggregate, written with the view's position.

Each write of a document and of the view's position in the event log is one
transaction, so an event is applied exactly once however the projector stops and
restarts. :class:`DocumentView` keeps them in PostgreSQL; :class:`InMemoryDocumentView`
in a dict, for the in-memory event store of unit tests.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, ClassVar, NoReturn, Protocol
from uuid import UUID

import psycopg
from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composable, Composed, Identifier
from psycopg.types.json import Jsonb

from application.queries import Between, OneOf, Page
from application.segment import Segment, segment_names

logger = logging.getLogger(__name__)

# Notified, with the view's table as payload, after each transaction that moves a view's
# position (infrastructure/view_progress.py listens).
VIEW_PROGRESS_CHANNEL = "boxoffice_view_progress"
NOTIFY_PROGRESS = SQL("SELECT pg_notify(%s, %s)")
# Up to this many rows a batch is written in one statement; more are pipelined (see
# DocumentView.upsert_many). Measured on durable storage: one statement is 13 % faster
# for one row and 26 % for fifty, about even at a thousand, and 7 % slower at 2,500.
ONE_STATEMENT_ROWS = 1_000

# A row to write: the document, its indexed columns' values, and the position of the
# event it reflects.
Row = tuple[dict[str, Any], dict[str, Any], int]


def _condition(name: str, value: Any) -> tuple[list[Composable], list[Any]]:
    """The SQL conditions and parameters of one filter."""
    column = Identifier(name)
    if isinstance(value, OneOf):
        return [SQL("{0} = ANY(%s)").format(column)], [list(value.values)]
    if isinstance(value, Between):
        conditions: list[Composable] = []
        params: list[Any] = []
        if value.low is not None:
            conditions.append(SQL("{0} >= %s").format(column))
            params.append(value.low)
        if value.high is not None:
            conditions.append(SQL("{0} < %s").format(column))
            params.append(value.high)
        return conditions, params
    return [SQL("{0} = %s").format(column)], [value]


def _matches(filters: dict[str, Any], values: dict[str, Any]) -> bool:
    return all(
        f.matches(values.get(n)) if isinstance(f, OneOf | Between) else values.get(n) == f
        for n, f in filters.items()
    )


class Documents(Protocol):
    """What a projection writes to and queries read from, whatever keeps the documents."""

    def upsert_many(self, rows: dict[UUID, Row], tracking: Tracking) -> None:
        """Write several keys' rows and the view's new position together."""
        ...

    def get(self, key: UUID) -> dict[str, Any] | None:
        """The document of ``key`` with its ``position``, or None."""
        ...

    def written(self, keys: Sequence[UUID]) -> dict[UUID, tuple[int, datetime]]:
        """For each of ``keys`` that has a row: the position of the event it was last
        written for, and when that write committed (a row rewritten by a rebuild: when
        the rebuild wrote it)."""
        ...

    def counts(self, column: str) -> dict[str, int]:
        """How many documents have each value of indexed ``column`` (none: ``""``)."""
        ...

    def page(self, filters: dict[str, Any], cursor: str | None, limit: int) -> Page:
        """Documents matching ``filters`` in insertion order, and the cursor after them."""
        ...

    def recent(self, filters: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """The ``limit`` documents matching ``filters`` inserted last, newest first."""
        ...

    def max_tracking_id(self, application_name: str) -> int | None:
        """The position of the last event one of the view's followers applied (its
        segment's, when it is split)."""
        ...

    def view_position(self, application_name: str) -> int | None:
        """The position up to which the view has applied every event: the lowest of
        its segments' when it is split."""
        ...

    def segment_positions(self, application_name: str) -> dict[str, int | None]:
        """Each segment's position, by label, when the view is split."""
        ...


class Fence(Protocol):
    """A lease's check inside a view's write (``infrastructure.leased_work.LeaseFence``):
    the write commits only while the lease is this holder's, and a take-over waits for
    it to commit."""

    def __call__(self, curs: Cursor[DictRow]) -> None:
        """Check in ``curs``'s transaction; raise if the lease is not held."""
        ...

    def condition(self) -> tuple[str, list[Any]]:
        """A ``SELECT`` with ``FOR SHARE`` that returns a row only while the lease is
        held, and its parameters, for a write that checks in its own statement."""
        ...

    def refused(self) -> NoReturn:
        """Raise for a write whose :meth:`condition` found no row (nothing written)."""
        ...


class SegmentedTracking(PostgresTrackingRecorder):
    """Positions in the log kept by a follower whole, or by each of its segments."""

    # How many segments the follower is split into (application/segment.py), each
    # keeping its own position: what its readers take its position from.
    segments: int = 1

    def resume_from(self, application_name: str) -> int | None:
        """Where follower ``application_name`` (a segment's name, when split) resumes.

        The first segment of a split to start writes the position of every segment of
        it at once, each where the follower was before the split (the lowest position
        of the whole follower or of another split: the segments were changed), or at
        the start of the log on a fresh one. A segment that starts later, on another
        process, then resumes from its own row, never from a position that another
        segment of its split reached without it. Every event up to it is applied, and
        one applied again changes nothing (a view's row never goes back to an earlier
        event, see DocumentView._upsert; a saga's guards find its step taken). A whole
        follower with no position starts from the beginning, or from the lowest of the
        segments it replaces.
        """
        found: int | None = self.max_tracking_id(application_name)
        if found is not None:
            return found
        prefix, _, label = application_name.partition("#")
        split = segment_names(prefix, int(label.rpartition("/")[2])) if label else [prefix]
        names = {
            "schema": Identifier(self.datastore.schema),
            "tracking": Identifier(self.tracking_table_name),
        }
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "INSERT INTO {schema}.{tracking} "
                    "SELECT name, coalesce(before.position, 0) "
                    "FROM unnest(%(split)s::text[]) AS name, "
                    "(SELECT min(notification_id) AS position FROM {schema}.{tracking} "
                    "WHERE (application_name = %(prefix)s OR starts_with(application_name, "
                    "%(segmented)s)) AND application_name <> ALL(%(split)s::text[])) AS before "
                    "WHERE before.position IS NOT NULL OR %(fresh_split)s "
                    "ON CONFLICT (application_name) DO NOTHING"
                ).format(**names),
                {
                    "split": split,
                    "prefix": prefix,
                    "segmented": prefix + "#",
                    "fresh_split": bool(label),
                },
            )
        resumed: int | None = self.max_tracking_id(application_name)
        return resumed

    def view_position(self, application_name: str) -> int | None:
        """The position up to which every event is applied: of a follower split into
        segments, the lowest of theirs (None until each has one)."""
        if self.segments == 1:
            found: int | None = self.max_tracking_id(application_name)
            return found
        statement, params = self.position_subquery(application_name)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(SQL("SELECT ") + statement + SQL(" AS position"), params)
            row = curs.fetchone()
        return None if row is None else row["position"]

    def segment_positions(self, application_name: str) -> dict[str, int | None]:
        """Each segment's position, by its label (``#0/2``); none for a whole follower."""
        if self.segments == 1:
            return {}
        return {
            segment.label: self.max_tracking_id(segment.tracking_name(application_name))
            for segment in Segment.all(self.segments)
        }

    def position_subquery(self, application_name: str) -> tuple[Composed, list[Any]]:
        """:meth:`view_position` as a scalar subquery, and its parameters."""
        names = {
            "schema": Identifier(self.datastore.schema),
            "tracking": Identifier(self.tracking_table_name),
        }
        if self.segments == 1:
            return SQL(
                "(SELECT max(notification_id) FROM {schema}.{tracking} WHERE application_name = %s)"
            ).format(**names), [application_name]
        return SQL(
            "(SELECT CASE WHEN count(*) = %s THEN min(notification_id) END "
            "FROM {schema}.{tracking} WHERE application_name = ANY(%s))"
        ).format(**names), [self.segments, segment_names(application_name, self.segments)]


class DocumentView(SegmentedTracking):
    """A table of one JSON document per aggregate, plus indexed columns for queries."""

    table: ClassVar[str]
    columns: ClassVar[dict[str, str]] = {}
    # When the view is written under a lease (infrastructure/lease.py): every write
    # checks it, and fails for a holder that lost it.
    fence: Fence | None = None

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        if not self.datastore.single_row_tracking:
            # The write moves the one row of the view's position (see upsert_many).
            msg = "a document view needs single-row tracking"
            raise ValueError(msg)
        self.check_identifier_length(self.table)
        extra = "".join(f", {name} {kind}" for name, kind in self.columns.items())
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{table} ("
                "id uuid PRIMARY KEY, seq bigserial, position bigint NOT NULL, "
                "doc jsonb NOT NULL, written_at timestamptz NOT NULL DEFAULT now()" + extra + ")"
            ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.table))
        )
        # When each row was last written: a command's timeline says when its effects
        # became visible in each view (a table of an earlier release gains it).
        self.sql_create_statements.append(
            SQL(
                "ALTER TABLE {schema}.{table} ADD COLUMN IF NOT EXISTS "
                "written_at timestamptz NOT NULL DEFAULT now()"
            ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.table))
        )
        for name, kind in self.columns.items():
            # A column added since the table was created (its rows need a rebuild).
            self.sql_create_statements.append(
                SQL(
                    "ALTER TABLE {schema}.{table} ADD COLUMN IF NOT EXISTS {column} " + kind
                ).format(
                    schema=Identifier(self.datastore.schema),
                    table=Identifier(self.table),
                    column=Identifier(name),
                )
            )
            self.sql_create_statements.append(
                SQL(
                    "CREATE INDEX IF NOT EXISTS {index} ON {schema}.{table} ({column}, seq)"
                ).format(
                    index=Identifier(f"{self.table}_{name}_idx"),
                    schema=Identifier(self.datastore.schema),
                    table=Identifier(self.table),
                    column=Identifier(name),
                )
            )

    def _insert_tracking(self, curs: Cursor[DictRow], tracking: Tracking) -> None:
        if self.fence is not None:
            self.fence(curs)
        super()._insert_tracking(curs, tracking)

    def upsert_many(self, rows: dict[UUID, Row], tracking: Tracking) -> None:
        """Write several keys' rows and the view's new position atomically, then notify.

        A position not ahead of the view's raises :class:`IntegrityError`, as the
        library's tracking does, and writes nothing.
        """
        records = [
            [key, position, Jsonb(doc), *(values[n] for n in self.columns)]
            for key, (doc, values, position) in rows.items()
        ]
        with self.datastore.get_connection() as conn:
            if len(records) <= ONE_STATEMENT_ROWS:
                self._write_in_one_statement(conn, records, tracking)
            else:
                self._write_pipelined(conn, records, tracking)
            # After the commit, so that a reader waiting on this view looks again; not
            # in it, where a NOTIFY holds a lock that serializes every notifying commit
            # (the event log's writers notify too) through its flush.
            try:
                conn.execute(NOTIFY_PROGRESS, (VIEW_PROGRESS_CHANNEL, self.table))
            except psycopg.Error as failed:  # the rows are committed: readers poll
                logger.warning("%s moved, notification not sent: %s", self.table, failed)

    def _write_in_one_statement(
        self, conn: psycopg.Connection[DictRow], records: list[list[Any]], tracking: Tracking
    ) -> None:
        """The position moves, and the rows are written only if it did, in one
        statement: on the pool's autocommit connection it commits on its own, where
        ``BEGIN``, the rows, the position and ``COMMIT`` are four round trips, and a
        live view's batches are small."""
        # One array per column (unnest's arguments).
        columns = [list(column) for column in zip(*records, strict=True)] or [
            [] for _ in self._kinds
        ]
        fence = self.fence
        params = [tracking.application_name, tracking.notification_id, *columns]
        statement = self._write_statement
        if fence is not None:
            # The lease's check in the same statement: still one round trip.
            condition, held_params = fence.condition()
            statement = self._fenced_write_statement(condition)
            params = [*held_params, *params]
        with (
            nullcontext() if conn.autocommit else conn.transaction(),
            conn.cursor() as curs,
        ):
            curs.execute(statement, params, prepare=True)
            moved = curs.fetchone()
        if fence is not None and (moved is None or not moved["held"]):
            fence.refused()
        if moved is None or not moved["moved"]:
            msg = f"{self.table} is not behind {tracking.notification_id}: nothing written"
            raise IntegrityError(msg)

    def _write_pipelined(
        self, conn: psycopg.Connection[DictRow], records: list[list[Any]], tracking: Tracking
    ) -> None:
        """The rows, then the position, in one transaction: for a large batch (a
        rebuild's), psycopg pipelines the rows, so that the server writes some while
        the client encodes the next, which one statement would do one after the other."""
        with conn.transaction(), conn.cursor() as curs:
            curs.executemany(self._upsert_statement, records)
            self._insert_tracking(curs, tracking)

    @cached_property
    def _kinds(self) -> dict[str, str]:
        """Each column a row writes, in the order of its values, with its type."""
        return {"id": "uuid", "position": "bigint", "doc": "jsonb", **self.columns}

    def _upsert(self, rows: Composable) -> Composed:
        """The upsert of ``rows`` (a ``VALUES`` or a ``SELECT`` of every column). A row
        never replaces one of a later event: when a view's segments change, a new
        segment applies again the events since the lowest position of the old ones."""
        return SQL(
            "INSERT INTO {schema}.{table} ({names}) {rows} ON CONFLICT (id) DO UPDATE SET "
            "{updates} WHERE {schema}.{table}.position <= EXCLUDED.position"
        ).format(
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.table),
            names=SQL(", ").join(Identifier(n) for n in self._kinds),
            rows=rows,
            updates=SQL(", ").join(
                [
                    *(
                        SQL("{0} = EXCLUDED.{0}").format(Identifier(n))
                        for n in list(self._kinds)[1:]
                    ),
                    SQL("written_at = now()"),
                ]
            ),
        )

    @cached_property
    def _upsert_statement(self) -> Composed:
        """One row's upsert."""
        return self._upsert(
            SQL("VALUES ({0})").format(SQL(", ").join(SQL("%s") for _ in self._kinds))
        )

    def _fenced_write_statement(self, condition: str) -> Composed:
        """:attr:`_write_statement` that moves the position only while ``condition``
        (a lease's row, locked ``FOR SHARE`` until the commit) holds, and says whether
        it did (``held``)."""
        cached = self._fenced.get(condition)
        if cached is None:
            cached = self._write(
                SQL("WITH fence AS (" + condition + "), "),
                SQL("SELECT %s::text, %s::bigint WHERE EXISTS (SELECT FROM fence)"),
                SQL(", EXISTS (SELECT FROM fence) AS held"),
            )
            self._fenced[condition] = cached
        return cached

    @cached_property
    def _fenced(self) -> dict[str, Composed]:
        return {}

    @cached_property
    def _write_statement(self) -> Composed:
        """The position's move and the rows' upsert in one statement: the rows' columns
        come as arrays, one parameter each, so the statement is the same for any batch
        and is prepared once per connection. Binary, since a text array's dumper
        escapes each value with a regular expression."""
        return self._write(SQL("WITH "), SQL("VALUES (%s, %s)"), SQL(""))

    def _write(self, head: SQL, position: SQL, tail: SQL) -> Composed:
        arrays = SQL(", ").join(SQL("%b::" + kind + "[]") for kind in self._kinds.values())
        return SQL(
            "{head}moved AS ("
            "INSERT INTO {schema}.{tracking} {position} "
            "ON CONFLICT (application_name) DO UPDATE "
            "SET notification_id = EXCLUDED.notification_id "
            "WHERE {schema}.{tracking}.notification_id < EXCLUDED.notification_id "
            "RETURNING notification_id), "
            "written AS ({upsert}) "
            "SELECT EXISTS (SELECT FROM moved) AS moved{tail}"
        ).format(
            head=head,
            position=position,
            tail=tail,
            schema=Identifier(self.datastore.schema),
            tracking=Identifier(self.tracking_table_name),
            upsert=self._upsert(
                SQL("SELECT * FROM unnest({0}) WHERE EXISTS (SELECT FROM moved)").format(arrays)
            ),
        )

    def get(self, key: UUID) -> dict[str, Any] | None:
        """The document of ``key`` with its ``position``, or None."""
        statement = SQL("SELECT doc, position FROM {schema}.{table} WHERE id = %s").format(
            schema=Identifier(self.datastore.schema), table=Identifier(self.table)
        )
        # One statement on the pool's autocommit connection: a transaction around it
        # would cost a BEGIN and a ROLLBACK, a round trip each, on every registry read.
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, (key,))
            row = curs.fetchone()
        if row is None:
            return None
        return {**row["doc"], "position": row["position"]}

    def written(self, keys: Sequence[UUID]) -> dict[UUID, tuple[int, datetime]]:
        """As :meth:`Documents.written`."""
        statement = SQL(
            "SELECT id, position, written_at FROM {schema}.{table} WHERE id = ANY(%s)"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.table))
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, (list(keys),))
            return {row["id"]: (row["position"], row["written_at"]) for row in curs.fetchall()}

    def counts(self, column: str) -> dict[str, int]:
        """How many documents have each value of indexed ``column`` (none: ``""``)."""
        if column not in self.columns:
            raise KeyError(f"{self.table} has no indexed column {column}")
        statement = SQL(
            "SELECT coalesce({column}::text, '') AS value, count(*) AS n "
            "FROM {schema}.{table} GROUP BY 1"
        ).format(
            column=Identifier(column),
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.table),
        )
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement)
            return {row["value"]: int(row["n"]) for row in curs.fetchall()}

    def recent(self, filters: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """As :meth:`Documents.recent`."""
        rows = self._select(filters, None, limit, newest_first=True)
        return [{**r["doc"], "position": r["position"]} for r in rows]

    def page(self, filters: dict[str, Any], cursor: str | None, limit: int) -> Page:
        """Documents matching ``filters`` (a value, :class:`OneOf` or :class:`Between` per
        indexed column) in insertion order, and the cursor after them."""
        rows = self._select(filters, cursor, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        documents = [{**r["doc"], "position": r["position"]} for r in rows]
        return documents, (encode_cursor(rows[-1]["seq"]) if more and rows else None)

    def _select(
        self,
        filters: dict[str, Any],
        cursor: str | None,
        limit: int,
        newest_first: bool = False,
    ) -> list[DictRow]:
        """Rows matching ``filters``, after ``cursor``, in insertion order (or newest
        first), ``limit`` at most."""
        conditions: list[Composable] = []
        params: list[Any] = []
        for name, value in filters.items():
            more_conditions, more_params = _condition(name, value)
            conditions += more_conditions
            params += more_params
        if cursor is not None:
            conditions.append(SQL("seq > %s"))
            params.append(decode_cursor(cursor))
        where = SQL(" WHERE ") + SQL(" AND ").join(conditions) if conditions else SQL("")
        statement = SQL(
            "SELECT seq, doc, position FROM {schema}.{table}{where} ORDER BY seq {order} LIMIT %s"
        ).format(
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.table),
            where=where,
            order=SQL("DESC" if newest_first else "ASC"),
        )
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, [*params, limit])
            return curs.fetchall()


class InMemoryDocumentView(POPOTrackingRecorder):
    """The documents of one view in memory, with the same behaviour as :class:`DocumentView`."""

    def __init__(self, columns: tuple[str, ...] = (), segments: int = 1) -> None:
        super().__init__()
        self.columns = columns
        self.segments = segments
        self._rows: dict[UUID, tuple[int, int, dict[str, Any], dict[str, Any]]] = {}
        self._written: dict[UUID, datetime] = {}
        self._seq = 0
        self._lock = threading.Lock()

    def upsert_many(self, rows: dict[UUID, Row], tracking: Tracking) -> None:
        """Write several keys' documents and the view's new position together."""
        with self._lock:
            self.insert_tracking(tracking)
            for key, (doc, values, position) in rows.items():
                if key in self._rows and self._rows[key][1] > position:
                    continue  # as DocumentView: never back to an earlier event's row
                seq = self._rows[key][0] if key in self._rows else self._seq + 1
                self._seq = max(self._seq, seq)
                self._rows[key] = (seq, position, doc, values)
                self._written[key] = datetime.now(UTC)

    def written(self, keys: Sequence[UUID]) -> dict[UUID, tuple[int, datetime]]:
        """As :meth:`Documents.written`."""
        with self._lock:
            return {k: (self._rows[k][1], self._written[k]) for k in keys if k in self._rows}

    def view_position(self, application_name: str) -> int | None:
        """As :meth:`DocumentView.view_position`, for the segments it has."""
        positions = [
            self.max_tracking_id(name) for name in segment_names(application_name, self.segments)
        ]
        return None if None in positions else min(p for p in positions if p is not None)

    def segment_positions(self, application_name: str) -> dict[str, int | None]:
        """As :meth:`DocumentView.segment_positions`."""
        if self.segments == 1:
            return {}
        return {
            s.label: self.max_tracking_id(s.tracking_name(application_name))
            for s in Segment.all(self.segments)
        }

    def get(self, key: UUID) -> dict[str, Any] | None:
        """The document of ``key`` with its ``position``, or None."""
        with self._lock:
            row = self._rows.get(key)
        return None if row is None else {**row[2], "position": row[1]}

    def counts(self, column: str) -> dict[str, int]:
        """As :meth:`DocumentView.counts`."""
        with self._lock:
            values = [row[3].get(column) for row in self._rows.values()]
        found: dict[str, int] = {}
        for value in values:
            key = "" if value is None else str(value)
            found[key] = found.get(key, 0) + 1
        return found

    def recent(self, filters: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """As :meth:`Documents.recent`."""
        with self._lock:
            rows = sorted(
                (row for row in self._rows.values() if _matches(filters, row[3])), reverse=True
            )
        return [{**row[2], "position": row[1]} for row in rows[:limit]]

    def page(self, filters: dict[str, Any], cursor: str | None, limit: int) -> Page:
        """Documents matching ``filters`` in insertion order, and the cursor after them."""
        after = decode_cursor(cursor) if cursor is not None else 0
        with self._lock:
            rows = sorted(
                row for row in self._rows.values() if row[0] > after and _matches(filters, row[3])
            )
        more = len(rows) > limit
        rows = rows[:limit]
        documents = [{**doc, "position": position} for _, position, doc, _ in rows]
        return documents, (encode_cursor(rows[-1][0]) if more and rows else None)


class InvalidCursorError(ValueError):
    """Raised when a paging cursor is not a row number."""


# A cursor is the row sequence number after which the next page starts: every such
# number is a valid cursor (a page after the last row is empty), so a cursor cannot be
# "not issued by this API", only malformed.
CURSOR = re.compile(r"[0-9]{1,18}")


def encode_cursor(seq: int) -> str:
    """The cursor of the rows after ``seq``."""
    return str(seq)


def decode_cursor(cursor: str) -> int:
    """The ``seq`` of ``cursor``; raises :class:`InvalidCursorError`."""
    if not CURSOR.fullmatch(cursor):
        raise InvalidCursorError(cursor)
    return int(cursor)
