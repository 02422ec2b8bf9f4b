"""The seat-reservation commands: a payload schema and a handler each, registered below.

The payload schemas validate HTTP bodies (every violation reported) and describe them
in the OpenAPI document; path parameters are part of the payload.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from application.registry import CommandRegistry, CommandSpec
from application.unit_of_work import UnitOfWork
from domain.show import Show, ShowExistsError

ResourceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
SeatLabel = Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=r"^\S+$")]


# C0 and C1 control characters and DEL: no text field needs them, and PostgreSQL's jsonb
# refuses NUL, which halted the read model that stored it. (A lone surrogate, which a
# JSON \u escape can also carry, pydantic already refuses as "not a valid string".)
FORBIDDEN_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")


class Payload(BaseModel):
    """Base of every command payload: unknown fields are errors, not silently dropped,
    and no text anywhere in it holds a control character."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _printable_text(cls, value: Any) -> Any:
        for text in _texts(value):
            found = FORBIDDEN_CHARACTERS.search(text)
            if found is not None:
                code = f"U+{ord(found.group()):04X}"
                raise ValueError(f"must not contain control characters ({code})")
        return value


def _texts(value: Any) -> Iterator[str]:
    """Every string in ``value``, looking into lists, tuples and dicts."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _texts(key)
            yield from _texts(item)


class CreateShow(Payload):
    """Schedule a show with its seat map and price."""

    show_id: ResourceId
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    starts_at: datetime
    seats: Annotated[list[SeatLabel], Field(min_length=1, max_length=5000)]
    price_cents: Annotated[int, Field(ge=0, le=100_000_000)]


class CancelShow(Payload):
    """Cancel a show."""

    show_id: ResourceId


def create_show(uow: UnitOfWork, cmd: CreateShow) -> None:
    """Schedule the show; an id already taken fails the command."""
    show = Show.schedule(
        show_id=cmd.show_id,
        title=cmd.title,
        starts_at=cmd.starts_at.isoformat(),
        seats=list(cmd.seats),
        price_cents=cmd.price_cents,
    )
    if uow.exists(show.id):
        raise ShowExistsError(f"show {cmd.show_id} already exists")
    uow.add(show)


def cancel_show(uow: UnitOfWork, cmd: CancelShow) -> None:
    """Cancel the show."""
    uow.get(Show, Show.create_id(cmd.show_id)).cancel()


def present_show(show: Show) -> dict[str, Any]:
    """The client's view of a show."""
    return {
        "show_id": show.show_id,
        "title": show.title,
        "starts_at": show.starts_at,
        "price_cents": show.price_cents,
        "status": show.status,
        "seats": {
            "available": show.available,
            "held": sorted(show.held),
            "sold": sorted(show.sold),
        },
        "waiting_list": show.waiting_ids,
    }


def register(registry: CommandRegistry) -> None:
    """Add the show commands."""
    registry.register(
        CommandSpec(
            name="CreateShow",
            payload=CreateShow,
            handler=create_show,
            target=lambda c: Show.create_id(c.show_id),
            resource=lambda c: f"/shows/{c.show_id}",
            creates=True,
            present=present_show,
        )
    )
    registry.register(
        CommandSpec(
            name="CancelShow",
            payload=CancelShow,
            handler=cancel_show,
            target=lambda c: Show.create_id(c.show_id),
            resource=lambda c: f"/shows/{c.show_id}",
            present=present_show,
        )
    )
