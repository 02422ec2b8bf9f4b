"""The command registry: one document per command, queryable by status, type and ids."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier
from pydantic import BaseModel, Field

from application.admission import SHORTEST_WINDOW, Backlog
from application.command import Command, Status
from application.queries import Page, Reader
from projections.document_projection import DocumentProjection
from projections.document_view import DocumentView


class CommandLinks(BaseModel):
    """Where to follow a command."""

    self: str
    resource: str
    events: str


class Attempt(BaseModel):
    """One run of a command by a worker."""

    attempt: int
    started_at: str
    ended_at: str | None
    worker: str
    outcome: str | None
    error: dict[str, Any] | None
    published_at: str | None = Field(
        default=None, description="when the relay published its message (None: not recorded)"
    )
    received_at: str | None = Field(
        default=None, description="when a worker received its message (None: not recorded)"
    )


class Change(BaseModel):
    """One change of a command's status."""

    status: str
    at: str
    component: str
    detail: str | None


class Hop(BaseModel):
    """A step of a command on its way, and when (``?timeline=true``)."""

    hop: Literal["accepted", "published", "received", "started", "outcome", "visible"]
    at: str
    ms: float = Field(description="milliseconds since the accept")
    component: str | None = Field(description="the part, or the worker, that took it")
    attempt: int | None = None
    outcome: str | None = None
    view: str | None = Field(default=None, description="of a visible hop: the view")


class CommandDocument(BaseModel):
    """A command's registry entry."""

    command_id: str
    type: str
    client: str = Field(description="the client it runs for; only it (and admins) sees it")
    aggregate_id: str
    status: Status
    attempts: list[Attempt]
    submitted_at: str
    updated_at: str
    correlation_id: str
    causation_id: str | None
    trace_id: str | None = Field(
        default=None,
        description="the OpenTelemetry trace that follows it (32 hex digits), when traced",
    )
    error: dict[str, Any] | None
    retry_at: str | None
    links: CommandLinks
    history: list[Change]
    timeline: list[Hop] | None = Field(
        default=None, description="with ?timeline=true: the command's hops with their times"
    )


def command_links(command: Command) -> dict[str, str]:
    """The links of a command document."""
    return {
        "self": f"/commands/{command.id}",
        "resource": command.resource,
        "events": f"/commands/{command.id}/events",
    }


def present_command(command: Command) -> dict[str, Any]:
    """The status document of ``GET /commands/{id}``."""
    return CommandDocument.model_validate(
        {
            "command_id": str(command.id),
            "type": command.command_type,
            "client": command.client,
            "aggregate_id": str(command.aggregate_id),
            "status": command.status,
            "attempts": [
                {**attempt, "error": _public_error(attempt["error"])}
                for attempt in command.attempts
            ],
            "submitted_at": command.created_on.isoformat(),
            "updated_at": command.modified_on.isoformat(),
            "correlation_id": str(command.correlation_id),
            "causation_id": command.causation_id,
            "trace_id": command.trace_id,
            "error": _public_error(command.error),
            "retry_at": command.retry_at.isoformat() if command.retry_at else None,
            "links": command_links(command),
            "history": command.history,
        }
    ).model_dump(mode="json", exclude={"timeline"})


def _public_error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    # Tracebacks are for operators (the CLI), not for API clients.
    if error is None:
        return None
    return {k: v for k, v in error.items() if k != "traceback"}


# A command's statuses before its outcome, and its outcomes.
WAITING: tuple[Status, ...] = ("accepted", "running", "retrying")
DECIDED: tuple[Status, ...] = ("succeeded", "failed", "dead_lettered")
# The most events of the log's unapplied tail counted (a registry far behind, being
# rebuilt, say, is counted that far: each reading stays cheap).
TAIL_CAP = 20_000
# The events that start a command waiting, and those that end its wait.
OPENING = tuple(get_topic(e) for e in (Command.CommandAccepted, Command.CommandRedriven))
CLOSING = tuple(
    get_topic(e)
    for e in (Command.CommandSucceeded, Command.CommandFailed, Command.CommandDeadLettered)
)


class CommandRegistryView(DocumentView):
    """The command registry's table."""

    table = "command_registry"
    columns: ClassVar[dict[str, str]] = {
        "status": "text",
        "type": "text",
        "client": "text",
        "aggregate_id": "uuid",
        "correlation_id": "uuid",
        "resource": "text",
        "submitted_at": "timestamptz",
    }

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        # The commands decided lately, for admission control's drain rate (backlog).
        self.sql_create_statements.append(
            SQL("CREATE INDEX IF NOT EXISTS {index} ON {schema}.{table} (written_at)").format(
                index=Identifier(f"{self.table}_written_at_idx"),
                schema=Identifier(self.datastore.schema),
                table=Identifier(self.table),
            )
        )

    def backlog(self, longest_window: float, application_name: str, events_table: str) -> Backlog:
        """As :class:`~application.admission.BacklogGauge`, in one statement: the
        commands accepted, running or retrying, by the registry and by the events of the
        log it has yet to apply, the first :data:`TAIL_CAP` of them (a registry behind
        under load would count too few), and those decided within the window, by the
        registry (by index: the waiting by status, the decided by time written, the
        log's tail by position)."""
        position, position_params = self.position_subquery(application_name)
        statement = SQL(
            "WITH waiting AS (SELECT count(*) AS n, "
            "extract(epoch FROM clock_timestamp() - min(submitted_at)) AS oldest "
            "FROM {schema}.{table} WHERE status = ANY(%s)), "
            "tail AS (SELECT count(*) FILTER (WHERE topic = ANY(%s)) AS opened, "
            "count(*) FILTER (WHERE topic = ANY(%s)) AS closed "
            "FROM (SELECT topic FROM {schema}.{events} "
            "WHERE notification_id > coalesce({position}, 0) "
            "ORDER BY notification_id LIMIT %s) AS unapplied), "
            "span AS (SELECT greatest(n + opened - closed, 0) AS n, coalesce(oldest, 0) AS oldest, "
            "least(%s, greatest(%s, coalesce(oldest, %s))) AS secs FROM waiting, tail) "
            "SELECT n, oldest, secs, (SELECT count(*) FROM {schema}.{table} "
            "WHERE written_at > clock_timestamp() - make_interval(secs => secs) "
            "AND status = ANY(%s)) AS drained FROM span"
        ).format(
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.table),
            events=Identifier(events_table),
            position=position,
        )
        params = [
            list(WAITING),
            list(OPENING),
            list(CLOSING),
            *position_params,
            TAIL_CAP,
            longest_window,
            SHORTEST_WINDOW,
            longest_window,
            list(DECIDED),
        ]
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params)
            row = curs.fetchone()
        assert row is not None  # an aggregate without GROUP BY returns one row
        return Backlog(
            waiting=int(row["n"]),
            oldest_seconds=float(row["oldest"]),
            drained=int(row["drained"]),
            window=float(row["secs"]),
        )

    def unfinished_since(self, before: datetime, limit: int) -> list[UUID]:
        """Commands accepted, running or retrying whose last change is before ``before``."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT id FROM command_registry "
                "WHERE status IN ('accepted', 'running', 'retrying') "
                "AND (doc->>'updated_at')::timestamptz < %s ORDER BY seq LIMIT %s",
                (before, limit),
            )
            return [row["id"] for row in curs.fetchall()]


class CommandRegistryProjection(DocumentProjection):
    """Materializes the command registry."""

    name = "command_registry"
    aggregate = Command
    view_class = CommandRegistryView
    document = CommandDocument

    @classmethod
    def present(cls, aggregate: Any) -> dict[str, Any]:
        return present_command(aggregate)

    def written(self, aggregates: list[Any]) -> None:
        """Time each command whose final outcome just became visible, from its accept."""
        now = datetime.now(UTC)
        for command in aggregates:
            if command.is_terminal:
                seconds = max((now - command.created_on).total_seconds(), 0.0)
                self.metrics.visible(command.command_type, command.status, seconds)

    @classmethod
    def column_values(cls, aggregate: Any) -> dict[str, Any]:
        command: Command = aggregate
        return {
            "status": command.status,
            "type": command.command_type,
            "client": command.client,
            "aggregate_id": command.aggregate_id,
            "correlation_id": command.correlation_id,
            "resource": command.resource,
            "submitted_at": command.created_on,
        }


def get_command(read: Reader, command_id: UUID) -> dict[str, Any] | None:
    """The registry entry of ``command_id`` with its ``position``, or None."""
    return read.get(CommandRegistryProjection.name, command_id)


def list_commands(read: Reader, filters: dict[str, Any], cursor: str | None, limit: int) -> Page:
    """Entries matching every filter (by indexed column), oldest first, and the next cursor."""
    return read.page(CommandRegistryProjection.name, filters, cursor, limit)
