"""The show commands: a payload schema, a handler and a registration each.

This is the example slice to copy: a payload (also the request body and its OpenAPI
schema), a handler (load, act, add), and a :class:`CommandSpec` naming its target,
its resource and its endpoint.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

from application.catalog import CommandCatalog, CommandSpec, Endpoint
from application.payloads import (
    UNIQUE_ITEMS,
    Payload,
    ResourceId,
    SeatLabel,
    Text200,
    Timestamp,
    distinct,
    whole_number,
)
from application.unit_of_work import UnitOfWork
from domain.show import Show, ShowExistsError


class CreateShow(Payload):
    """Schedule a show with its seat map and price."""

    show_id: ResourceId
    title: Text200
    starts_at: Timestamp
    seats: Annotated[
        list[SeatLabel],
        Field(min_length=1, max_length=5000, json_schema_extra=UNIQUE_ITEMS),
        AfterValidator(distinct),
    ]
    price_cents: Annotated[int, Field(ge=0, le=100_000_000), BeforeValidator(whole_number)]


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
        owner=uow.client,
    )
    if uow.exists(show.id):
        raise ShowExistsError(f"show {cmd.show_id} already exists")
    uow.add(show)


def cancel_show(uow: UnitOfWork, cmd: CancelShow) -> None:
    """Cancel the show."""
    uow.get(Show, Show.create_id(cmd.show_id)).cancel()


def register(catalog: CommandCatalog) -> None:
    """Add the show commands."""
    catalog.register(
        CommandSpec(
            name="CreateShow",
            payload=CreateShow,
            handler=create_show,
            target=lambda c: Show.create_id(c.show_id),
            resource="/shows/{show_id}",
            creates=True,
            endpoint=Endpoint("PUT", "/shows/{show_id}", "Create a show (CreateShow)"),
        )
    )
    catalog.register(
        CommandSpec(
            name="CancelShow",
            payload=CancelShow,
            handler=cancel_show,
            target=lambda c: Show.create_id(c.show_id),
            resource="/shows/{show_id}",
            endpoint=Endpoint("POST", "/shows/{show_id}/cancel", "Cancel a show (CancelShow)"),
        )
    )
