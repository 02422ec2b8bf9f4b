"""The read models over PostgreSQL: how far the views are, in one statement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eventsourcing.application import Application
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from infrastructure.log_recorder import HORIZON, TransactionOrderedRecorder
from projections.document_projection import DocumentProjection
from projections.document_view import DocumentView
from projections.read_models import ReadModels, ViewProgress


class PostgresReadModels(ReadModels):
    """:class:`ReadModels` whose views are tables beside the event log.

    Which views have caught up with a position (every registry read says so) asks, for
    each view, its tracked position and the first event of its topics after it: one
    statement for all the views, instead of two queries per view.
    """

    def __init__(
        self,
        app: Application[Any],
        projections: Sequence[type[DocumentProjection]],
        views: Mapping[str, DocumentView],
        progress: ViewProgress | None = None,
    ) -> None:
        super().__init__(app, projections, views, progress)
        # Each view's part of the statement and its parameters, built once: every
        # registry read asks.
        self._columns: dict[str, tuple[Composed, list[Any]]] = {}
        self._statements: dict[tuple[str, ...], tuple[Composed, list[Any]]] = {}
        recorder = app.recorder
        if not isinstance(recorder, TransactionOrderedRecorder):
            return
        for name, view in views.items():
            # The view's position: its row's, or the lowest of its segments'.
            position, position_params = view.position_subquery(app.name)
            column = (
                # Topic by topic, each one step along the (topic, notification_id)
                # index: however far back the view's last event lies. The bounds are
                # row comparisons, which only that index can serve: written as
                # `topic = … AND notification_id > …`, a planner with statistics from
                # a smaller log (a new deployment, before autovacuum's next analyze)
                # walks the notification_id index from the view's position, through
                # every event of other topics, for every read.
                SQL(
                    "(SELECT min(f.id) FROM unnest(%s::text[]) AS t(topic), LATERAL ("
                    "SELECT e.notification_id AS id FROM {schema}.{events} e "
                    "WHERE (e.topic, e.notification_id) > (t.topic, COALESCE({position}, 0)) "
                    "AND (e.topic, e.notification_id) < (t.topic, {horizon}) "
                    "ORDER BY e.topic, e.notification_id LIMIT 1) f)"
                ).format(
                    schema=Identifier(recorder.datastore.schema),
                    events=Identifier(recorder.events_table_name),
                    position=position,
                    horizon=HORIZON,
                )
            )
            self._columns[name] = (column, [list(self.topics[name]), *position_params])

    def frontiers(self, names: Sequence[str]) -> dict[str, int | None]:
        """The first event each view of ``names`` has yet to apply (None: none), all
        read in one snapshot."""
        recorder = self.app.recorder
        if not isinstance(recorder, TransactionOrderedRecorder) or not names:
            return super().frontiers(names)
        statement, params = self.frontiers_statement(names)
        with (
            recorder.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            curs.execute(statement, params)
            row = curs.fetchone()
        assert row is not None  # a SELECT without FROM returns one row
        return dict(zip(names, row, strict=True))

    def frontiers_statement(self, names: Sequence[str]) -> tuple[Composed, list[Any]]:
        """The statement :meth:`frontiers` runs for ``names``, with its parameters."""
        key = tuple(names)
        if key not in self._statements:
            columns = [self._columns[name] for name in names]
            self._statements[key] = (
                SQL("SELECT ") + SQL(", ").join(column for column, _ in columns),
                [param for _, params in columns for param in params],
            )
        return self._statements[key]
