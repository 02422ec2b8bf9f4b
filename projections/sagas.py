"""The sagas read model: each saga's state and decisions, and the deadlines to fire."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from application.queries import Reader
from domain.reservation_saga import TERMINAL, ReservationSaga, SagaState
from projections.command_registry import list_commands
from projections.document_projection import DocumentProjection
from projections.document_view import DocumentView

# The states a saga of this view can be in, and those of a saga still running.
STATES: tuple[str, ...] = tuple(state.value for state in SagaState)
RUNNING: tuple[str, ...] = tuple(state.value for state in SagaState if state not in TERMINAL)
# Enough for any saga's commands (a handful per run): the timeline reads one page.
TIMELINE_COMMANDS = 500


class TimelineEntry(BaseModel):
    """A decision of the saga, or a command it (or its client) issued."""

    at: str
    kind: Literal["decision", "command"]
    name: str
    issued: list[str] | None = None
    deadline_at: str | None = Field(default=None, description="the deadline a decision set")
    fired_at: str | None = Field(
        default=None, description="when the saga runner found the deadline passed"
    )
    command_id: str | None = None
    status: str | None = None
    causation_id: str | None = None


class SagaDocument(BaseModel):
    """A saga's state, and its timeline of decisions and commands."""

    saga_id: str
    reservation_id: str
    show_id: str
    state: SagaState
    run: int
    deadline_at: str | None
    client: str | None = Field(description="the client whose reservation it runs")
    timeline: list[TimelineEntry]


def present_saga(saga: ReservationSaga) -> dict[str, Any]:
    """A saga's state and decisions (the commands of its timeline come from the registry)."""
    return {
        "saga_id": str(saga.id),
        "reservation_id": saga.reservation_id,
        "show_id": saga.show_id,
        "state": saga.state.value,
        "run": saga.run,
        "deadline_at": saga.deadline_at.isoformat() if saga.deadline_at else None,
        "client": saga.owner,
        "decisions": list(saga.decisions),
    }


class SagasView(DocumentView):
    """Sagas' states, and the deadlines the saga runner fires."""

    table = "sagas"
    columns: ClassVar[dict[str, str]] = {
        "state": "text",
        "deadline_at": "timestamptz",
        "started_at": "timestamptz",
        "updated_at": "timestamptz",
    }

    def due(self, now: datetime) -> list[UUID]:
        """The sagas charging past their deadline."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT id FROM sagas WHERE state = %s AND deadline_at <= %s ORDER BY deadline_at",
                (SagaState.CHARGING.value, now),
            )
            return [row["id"] for row in curs.fetchall()]


class SagasProjection(DocumentProjection):
    """Materializes the sagas read model."""

    name = "sagas"
    aggregate = ReservationSaga
    view_class = SagasView
    document = SagaDocument
    path = "/sagas/{saga_id}"
    private = True

    @classmethod
    def key(cls, ident: str) -> UUID | None:
        try:
            return UUID(ident)
        except ValueError:
            return None

    @classmethod
    def find(cls, read: Reader, key: UUID) -> dict[str, Any] | None:
        return get_saga(read, key)

    @classmethod
    def present(cls, aggregate: Any) -> dict[str, Any]:
        return present_saga(aggregate)

    @classmethod
    def column_values(cls, aggregate: Any) -> dict[str, Any]:
        saga: ReservationSaga = aggregate
        return {
            "state": saga.state.value,
            "deadline_at": saga.deadline_at,
            "started_at": saga.created_on,
            "updated_at": saga.modified_on,
        }


def get_saga(read: Reader, saga_id: UUID) -> dict[str, Any] | None:
    """The saga with its timeline, decisions and commands in time order, or None."""
    stored = read.get(SagasProjection.name, saga_id)
    if stored is None:
        return None
    decisions = [{"kind": "decision", **d} for d in stored.pop("decisions")]
    commands, _ = list_commands(read, {"correlation_id": saga_id}, None, TIMELINE_COMMANDS)
    steps = [
        {
            "at": c["submitted_at"],
            "kind": "command",
            "name": c["type"],
            "command_id": c["command_id"],
            "status": c["status"],
            "causation_id": c["causation_id"],
        }
        for c in commands
    ]
    timeline = sorted(decisions + steps, key=lambda entry: str(entry["at"]))
    position = stored.pop("position")
    document = SagaDocument.model_validate({**stored, "timeline": timeline})
    return {**document.model_dump(mode="json", exclude_unset=True), "position": position}


# Dead letters looked at when counting the sagas stuck on one (a healthy service has few).
STUCK_SCAN = 1_000


def stuck_sagas(read: Reader) -> int:
    """The running sagas waiting on a dead-lettered command (their own step's, or their
    reservation's): they go nowhere until an operator re-drives it. Looks at the first
    :data:`STUCK_SCAN` dead letters."""
    dead, _ = list_commands(read, {"status": "dead_lettered"}, None, STUCK_SCAN)
    waiting = {UUID(command["correlation_id"]) for command in dead}
    return sum(
        1
        for saga_id in waiting
        if (saga := read.get(SagasProjection.name, saga_id)) is not None
        and saga["state"] in RUNNING
    )
