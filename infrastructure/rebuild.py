"""A projection rebuilt from zero beside its live view, compared with it, then swapped.

The rebuild writes a shadow table (``{table}_shadow``, with its own tracking table)
while the live view keeps serving and its projector keeps running. :meth:`diff`
compares the two on the rows both have settled. :meth:`swap` does, in one
transaction: lock the live table and its tracking table (readers and the live
projector wait, they do not fail), bring the shadow to exactly the live view's
position, and put the shadow in the live one's place (the live one is kept as
``{table}_previous`` until the next swap). Readers see the old view or the new one,
never a half-built one; a live projector waiting on the lock writes its next batch
into the new table, whose position is the one it had.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from application.operations.ports import ViewBehindError
from projections.document_projection import DocumentProjection
from projections.document_view import DocumentView

# Events read and applied per transaction of the shadow: large, since on durable storage
# every commit waits for a flush.
REBUILD_BATCH = 5_000
SHADOW = "_shadow"
PREVIOUS = "_previous"


class LiveViewBehindError(ViewBehindError):
    """Raised by a swap when the live view has not reached the rebuilt one's position."""


@dataclass
class Difference:
    """How the shadow differs from the live view on the rows both have settled."""

    live_rows: int
    shadow_rows: int
    differing: int
    first: list[dict[str, Any]]
    position: int

    def as_dict(self) -> dict[str, Any]:
        """As JSON-ready data."""
        return dict(vars(self))


class ProjectionRebuild:
    """Rebuilds ``projection``'s view into a shadow table; ``projection`` may be a changed
    class with the same ``name`` and view (what a fix to the projection deploys)."""

    def __init__(
        self, app: Application[Any], projection: type[DocumentProjection], segments: int = 1
    ) -> None:
        self.app = app
        self.projection = projection
        datastore = getattr(app.recorder, "datastore", None)
        if not isinstance(datastore, PostgresDatastore):
            raise TypeError("a rebuild needs the PostgreSQL event store")
        self.datastore = datastore
        live = projection.view_class
        self.live_table = live.table
        self.live_tracking = f"{projection.name}_tracking"
        self.shadow_table = live.table + SHADOW
        self.shadow_tracking = f"{projection.name}{SHADOW}_tracking"
        shadow_class = type(f"Shadow{live.__name__}", (live,), {"table": self.shadow_table})
        self.shadow: DocumentView = shadow_class(
            datastore=datastore, tracking_table_name=self.shadow_tracking
        )
        self.live: DocumentView = live(datastore=datastore, tracking_table_name=self.live_tracking)
        # The live view's projector may split it (VIEW_SEGMENTS); the rebuild applies it whole.
        self.live.segments = segments
        self.applier = projection(self.shadow, app.repository)

    def head(self) -> int:
        """The last event of the log the projection follows."""
        last = self.app.recorder.max_notification_id() or 0
        return int(last)

    def count(self, after: int, upto: int) -> int:
        """How many events of the projection's topics lie in ``(after, upto]``."""
        statement = SQL(
            "SELECT count(*) AS n FROM {schema}.{table} WHERE notification_id > %s "
            "AND notification_id <= %s AND topic = ANY(%s)"
        ).format(
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.app.recorder.events_table_name),  # type: ignore[attr-defined]
        )
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, (after, upto, list(self.projection.event_topics())))
            row = curs.fetchone()
        return int(row["n"]) if row else 0

    def start(self) -> None:
        """An empty shadow (a rebuild left half-done is dropped)."""
        self._drop(self.shadow_table, self.shadow_tracking)
        self.shadow.create_table()

    def position(self) -> int:
        """How far the shadow has applied the log."""
        return self.shadow.max_tracking_id(self.app.name) or 0

    def catch_up(
        self, upto: int | None = None, progress: Callable[[int], None] = lambda applied: None
    ) -> int:
        """Apply the events after the shadow's position up to ``upto`` (the head when
        None); ``progress`` hears how many each batch applied. Returns how many."""
        upto = self.head() if upto is None else upto
        applied = 0
        after = self.position()
        topics = self.projection.event_topics()
        while after < upto:
            batch = self.app.recorder.select_notifications(
                start=after, stop=upto, limit=REBUILD_BATCH, topics=topics, inclusive_of_start=False
            )
            if not batch:
                break
            self.applier.process_events(
                [(self.app.mapper.to_domain_event(n), Tracking(self.app.name, n.id)) for n in batch]
            )
            after = batch[-1].id
            applied += len(batch)
            progress(len(batch))
        # Its position stays at the last event it applied, as the live view's does.
        return applied

    def live_position(self) -> int:
        """How far the live view has applied the log."""
        return self.live.view_position(self.app.name) or 0

    def await_live(self, position: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the live view to reach ``position``."""
        deadline = time.monotonic() + timeout
        while self.live_position() < position:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def diff(self, limit: int = 10) -> Difference:
        """The shadow against the live view, on the rows neither has changed past the
        position both have reached (the others are not compared)."""
        position = min(self.position(), self.live_position())
        names = {
            "schema": Identifier(self.datastore.schema),
            "live": Identifier(self.live_table),
            "shadow": Identifier(self.shadow_table),
        }
        differing = SQL(
            "FROM {schema}.{live} l FULL JOIN {schema}.{shadow} s ON l.id = s.id "
            "WHERE l.doc IS DISTINCT FROM s.doc "
            "AND coalesce(l.position, 0) <= %(p)s AND coalesce(s.position, 0) <= %(p)s"
        ).format(**names)
        with self.datastore.transaction(commit=False) as curs:
            counts = SQL(
                "SELECT (SELECT count(*) FROM {schema}.{live}) AS live, "
                "(SELECT count(*) FROM {schema}.{shadow}) AS shadow"
            ).format(**names)
            curs.execute(counts)
            rows = curs.fetchone()
            assert rows is not None
            curs.execute(SQL("SELECT count(*) AS n ") + differing, {"p": position})
            found = curs.fetchone()
            curs.execute(
                SQL("SELECT coalesce(l.id, s.id) AS id, l.doc AS live, s.doc AS shadow ")
                + differing
                + SQL(" ORDER BY coalesce(l.seq, s.seq) LIMIT %(limit)s"),
                {"p": position, "limit": limit},
            )
            first = [
                {"id": str(r["id"]), "live": r["live"], "shadow": r["shadow"]}
                for r in curs.fetchall()
            ]
        return Difference(rows["live"], rows["shadow"], found["n"] if found else 0, first, position)

    def swap(self) -> int:
        """Put the shadow in the live view's place, atomically (see the module);
        returns the position both had at the swap."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "LOCK TABLE {schema}.{live}, {schema}.{tracking} IN ACCESS EXCLUSIVE MODE"
                ).format(
                    schema=Identifier(self.datastore.schema),
                    live=Identifier(self.live_table),
                    tracking=Identifier(self.live_tracking),
                )
            )
            # The furthest of the live view's followers (the view whole, or each of its
            # segments): the shadow applies every event up to it, and takes over their
            # positions, so that each resumes where it was; a segment behind it applies
            # again a few events of its own, which changes none of their rows.
            names = {
                "schema": Identifier(self.datastore.schema),
                "live": Identifier(self.live_tracking),
                "shadow": Identifier(self.shadow_tracking),
            }
            prefix = self.app.name + "#"
            followers = SQL(
                "WHERE application_name = %(name)s OR left(application_name, %(n)s) = %(prefix)s"
            )
            params = {"name": self.app.name, "n": len(prefix), "prefix": prefix}
            curs.execute(
                SQL("SELECT max(notification_id) AS p FROM {schema}.{live} ").format(**names)
                + followers,
                params,
            )
            row = curs.fetchone()
            position = int(row["p"]) if row and row["p"] is not None else 0
            # The shadow's own transactions: its tables are not locked.
            if self.position() > position:
                raise LiveViewBehindError(
                    f"the live view is at {position}, behind the rebuilt one "
                    f"({self.position()}): is its projector running?"
                )
            self.catch_up(position, progress=lambda n: None)
            curs.execute(
                SQL("INSERT INTO {schema}.{shadow} SELECT * FROM {schema}.{live} ").format(**names)
                + followers
                + SQL(
                    " ON CONFLICT (application_name) DO UPDATE "
                    "SET notification_id = EXCLUDED.notification_id"
                ),
                params,
            )
            self._drop_in(
                curs, self.live_table + PREVIOUS, f"{self.projection.name}{PREVIOUS}_tracking"
            )
            self._rename(curs, self.live_table, self.live_table + PREVIOUS)
            self._rename(curs, self.live_tracking, f"{self.projection.name}{PREVIOUS}_tracking")
            self._rename(curs, self.shadow_table, self.live_table)
            self._rename(curs, self.shadow_tracking, self.live_tracking)
        return position

    def _drop(self, table: str, tracking: str) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._drop_in(curs, table, tracking)

    def _drop_in(self, curs: Cursor[DictRow], table: str, tracking: str) -> None:
        for name in (table, tracking):
            curs.execute(
                SQL("DROP TABLE IF EXISTS {schema}.{name}").format(
                    schema=Identifier(self.datastore.schema), name=Identifier(name)
                )
            )

    def _rename(self, curs: Cursor[DictRow], old: str, new: str) -> None:
        """Rename table ``old`` and the indexes named after it (``{old}_..``)."""
        schema = Identifier(self.datastore.schema)
        curs.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
            (self.datastore.schema, old),
        )
        for (index,) in [(r["indexname"],) for r in curs.fetchall()]:
            if index.startswith(old + "_"):
                curs.execute(
                    SQL("ALTER INDEX {schema}.{index} RENAME TO {new}").format(
                        schema=schema,
                        index=Identifier(index),
                        new=Identifier(new + index.removeprefix(old)),
                    )
                )
        curs.execute(
            SQL("ALTER TABLE {schema}.{old} RENAME TO {new}").format(
                schema=schema, old=Identifier(old), new=Identifier(new)
            )
        )
