"""The HTTP-only shapes: the ``/admin`` request bodies, and the responses for the
OpenAPI document.

Command bodies are the command payload schemas and the read models' documents are
the projections' ``document`` models; these are the rest.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from application.command import Status
from projections.command_registry import CommandDocument, CommandLinks


class Accepted(BaseModel):
    """The answer to an accepted command."""

    command_id: str
    status: Status
    links: CommandLinks
    position: int | None = Field(None, description="event-log position of the acceptance")
    warnings: list[str] | None = None


class CommandStatus(CommandDocument):
    """A command's registry entry, with what the API adds to it."""

    consistency_token: str | None = Field(
        None, description="send as Consistency-Token to read views that include this outcome"
    )
    projections: dict[str, bool] | None = Field(
        None, description="which read models have caught up with this command"
    )
    resource: dict[str, Any] | None = Field(None, description="in synchronous answers")


class CommandPage(BaseModel):
    """A page of registry entries."""

    items: list[CommandStatus]
    links: dict[str, str]


class Stall(BaseModel):
    """The event a follower cannot get past."""

    position: int = Field(description="the event-log position of the event it cannot apply")
    error: str
    attempts: int = Field(description="tries in a row that failed on that event")
    since: str
    last_at: str


class LeaseHolder(BaseModel):
    """Who holds a part's lease (relay, saga-runner, projection:<view>), and for how long."""

    name: str
    holder: str = Field(description="part@host:pid:nonce")
    token: int = Field(description="the fencing token: one more at each take-over")
    age_seconds: float = Field(description="since this holder took the lease")
    expires_in_seconds: float = Field(description="until it lapses unrenewed; <= 0: lapsed")


class NamedStall(Stall):
    """A stalled follower."""

    name: str


class SegmentState(BaseModel):
    """One segment of a view split by aggregate id (VIEW_SEGMENTS)."""

    segment: str = Field(description="its index of the count: #0/2")
    position: int
    lease: LeaseHolder | None = Field(
        default=None, description="the projector holding this segment's lease, if any"
    )


class ProjectionState(BaseModel):
    """A read model's position and lag."""

    name: str
    position: int
    head: int
    lag: int
    lag_capped: bool
    lag_seconds: float = Field(
        default=0.0, description="age of the oldest event it has yet to apply (0: none)"
    )
    stalled: Stall | None
    lease: LeaseHolder | None = Field(
        default=None, description="the projector holding this view's lease, if any"
    )
    segments: list[SegmentState] = Field(
        default_factory=list,
        description="of a view split into segments, each one's position and lease holder "
        "(the view's position is the lowest of theirs)",
    )
    events_per_s: float | None = Field(
        default=None, description="with ?sample: events applied per second over it"
    )


class ProjectionList(BaseModel):
    """Every read model's position and lag."""

    items: list[ProjectionState]


class WebhookDelivery(BaseModel):
    """One command outcome POSTed, or to be POSTed, to its Callback-Url."""

    delivery_id: str = Field(description="sent as Boxoffice-Delivery")
    url: str
    status: Literal["pending", "delivered", "parked"]
    attempts: int
    last_error: str | None
    next_at: str
    created_at: str
    updated_at: str


class WebhookList(BaseModel):
    """Webhook deliveries, most recently changed first."""

    items: list[WebhookDelivery]


class Reachability(BaseModel):
    """Whether a dependency answered."""

    reachable: bool
    error: str | None = None


class Health(BaseModel):
    """Whether the service can work."""

    status: Literal["ok", "degraded"]
    event_store: Reachability
    broker: Reachability
    stalled: list[NamedStall] = Field(
        description="followers (projections, relay, saga runner) failing on one event"
    )
    leases: list[LeaseHolder] = Field(
        default_factory=list, description="the single-active parts' leases and their holders"
    )


class ProblemDetails(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = Field(None, description="every violation found")


class RedriveRequest(BaseModel):
    """Which dead letters to re-drive: ids, every one of an error type, or all."""

    model_config = ConfigDict(extra="forbid", strict=True)

    command_ids: list[UUID] = Field(default_factory=list, max_length=1000)
    type: str | None = Field(default=None, min_length=1, max_length=100)
    all: bool = False
    reason: str = Field(default="re-driven by an operator", min_length=1, max_length=200)


class ReplayRequest(BaseModel):
    """Which sagas to replay: ids (or reservation ids), or a query."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sagas: list[str] = Field(default_factory=list, max_length=1000)
    all: bool = False
    state: str | None = None
    failed_step: bool = False
    since: str | None = None
    until: str | None = None
    show_all: bool = False


class RebuildRequest(BaseModel):
    """Whether to swap the rebuilt view in."""

    model_config = ConfigDict(extra="forbid", strict=True)

    swap: bool = False
    rows: int = Field(default=10, ge=0, le=100)
