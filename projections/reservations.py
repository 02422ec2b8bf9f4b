"""The reservations read model: one document per reservation, by show and status."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from application.payloads import RESOURCE_ID_PATTERN
from domain.reservation import Reservation
from domain.reservation_saga import ReservationSaga
from projections.document_projection import DocumentProjection
from projections.document_view import DocumentView


class ReservationDocument(BaseModel):
    """A reservation."""

    reservation_id: str
    show_id: str
    customer_id: str
    seats: list[str]
    status: Literal["pending", "confirmed", "rejected", "waitlisted", "cancelled", "expired"]
    reason: str | None
    amount_cents: int
    saga_id: str
    client: str | None = Field(description="the client that placed it; only it sees it")


def present_reservation(reservation: Reservation) -> dict[str, Any]:
    """The client's view of a reservation."""
    return ReservationDocument.model_validate(
        {
            "reservation_id": reservation.reservation_id,
            "show_id": reservation.show_id,
            "customer_id": reservation.customer_id,
            "seats": reservation.seats,
            "status": reservation.status,
            "reason": reservation.reason,
            "amount_cents": reservation.amount_cents,
            "saga_id": str(ReservationSaga.create_id(reservation.reservation_id)),
            "client": reservation.owner,
        }
    ).model_dump(mode="json")


class ReservationsView(DocumentView):
    """Reservations as clients read them."""

    table = "reservations"
    columns: ClassVar[dict[str, str]] = {"show_id": "text", "status": "text"}


class ReservationsProjection(DocumentProjection):
    """Materializes the reservations read model."""

    name = "reservations"
    aggregate = Reservation
    view_class = ReservationsView
    document = ReservationDocument
    path = "/reservations/{reservation_id}"
    private = True
    id_schema: ClassVar[dict[str, Any]] = {"type": "string", "pattern": RESOURCE_ID_PATTERN}

    @classmethod
    def present(cls, aggregate: Any) -> dict[str, Any]:
        return present_reservation(aggregate)

    @classmethod
    def column_values(cls, aggregate: Any) -> dict[str, Any]:
        return {"show_id": aggregate.show_id, "status": aggregate.status}
