"""The shows read model: a show's seats as clients read them, one document per show."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from application.payloads import RESOURCE_ID_PATTERN
from domain.show import Show
from projections.document_projection import DocumentProjection
from projections.document_view import DocumentView


class Seats(BaseModel):
    """A show's seats by state, each list in seat-map order or sorted."""

    available: list[str]
    held: list[str]
    sold: list[str]


class ShowDocument(BaseModel):
    """A show."""

    show_id: str
    title: str
    starts_at: str
    price_cents: int
    status: Literal["scheduled", "cancelled"]
    seats: Seats
    waiting_list: list[str] = Field(description="reservation ids waiting for seats, in order")


def present_show(show: Show) -> dict[str, Any]:
    """The client's view of a show."""
    return ShowDocument.model_validate(
        {
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
    ).model_dump(mode="json")


class ShowsView(DocumentView):
    """Shows as clients read them."""

    table = "shows"


class ShowsProjection(DocumentProjection):
    """Materializes the shows read model."""

    name = "shows"
    aggregate = Show
    view_class = ShowsView
    document = ShowDocument
    path = "/shows/{show_id}"
    id_schema: ClassVar[dict[str, Any]] = {"type": "string", "pattern": RESOURCE_ID_PATTERN}

    @classmethod
    def present(cls, aggregate: Any) -> dict[str, Any]:
        return present_show(aggregate)
