"""Response shapes, for the OpenAPI document (requests use the command payload schemas)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from application.command import Status


class CommandLinks(BaseModel):
    self: str
    resource: str
    events: str


class Accepted(BaseModel):
    """The answer to an accepted command."""

    command_id: str
    status: Status
    links: CommandLinks
    position: int | None = Field(None, description="event-log position of the acceptance")
    warnings: list[str] | None = None


class Attempt(BaseModel):
    attempt: int
    started_at: str
    ended_at: str | None
    worker: str
    outcome: str | None
    error: dict[str, Any] | None


class Change(BaseModel):
    status: str
    at: str
    component: str
    detail: str | None


class CommandDocument(BaseModel):
    """A command's registry entry."""

    command_id: str
    type: str
    aggregate_id: str
    status: Status
    attempts: list[Attempt]
    submitted_at: str
    updated_at: str
    correlation_id: str
    causation_id: str | None
    error: dict[str, Any] | None
    retry_at: str | None
    links: CommandLinks
    history: list[Change]
    consistency_token: str | None = Field(
        None, description="send as Consistency-Token to read views that include this outcome"
    )
    projections: dict[str, bool] | None = Field(
        None, description="which read models have caught up with this command"
    )
    resource: dict[str, Any] | None = Field(None, description="in synchronous answers")


class CommandPage(BaseModel):
    items: list[CommandDocument]
    links: dict[str, str]


class Seats(BaseModel):
    available: list[str]
    held: list[str]
    sold: list[str]


class ShowDocument(BaseModel):
    show_id: str
    title: str
    starts_at: str
    price_cents: int
    status: Literal["scheduled", "cancelled"]
    seats: Seats
    waiting_list: list[str] = Field(description="reservation ids waiting for seats, in order")


class ReservationDocument(BaseModel):
    reservation_id: str
    show_id: str
    customer_id: str
    seats: list[str]
    status: Literal["pending", "confirmed", "rejected", "waitlisted", "cancelled", "expired"]
    reason: str | None
    amount_cents: int
    saga_id: str


class TimelineEntry(BaseModel):
    at: str
    kind: Literal["decision", "command"]
    name: str
    issued: list[str] | None = None
    command_id: str | None = None
    status: str | None = None
    causation_id: str | None = None


class SagaDocument(BaseModel):
    saga_id: str
    reservation_id: str
    show_id: str
    state: str
    run: int
    deadline_at: str | None
    timeline: list[TimelineEntry]


class Stall(BaseModel):
    position: int = Field(description="the event-log position of the event it cannot apply")
    error: str
    attempts: int = Field(description="tries in a row that failed on that event")
    since: str
    last_at: str


class NamedStall(Stall):
    name: str


class ProjectionState(BaseModel):
    name: str
    position: int
    head: int
    lag: int
    lag_capped: bool
    stalled: Stall | None


class ProjectionList(BaseModel):
    items: list[ProjectionState]


class Reachability(BaseModel):
    reachable: bool
    error: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    event_store: Reachability
    broker: Reachability
    stalled: list[NamedStall] = Field(
        description="followers (projections, relay, saga runner) failing on one event"
    )


class ProblemDetails(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = Field(None, description="every violation found")
