"""Every read model this service keeps: adding one is one line here."""

from __future__ import annotations

from typing import Any

from projections.command_registry import CommandRegistryProjection
from projections.document_projection import DocumentProjection
from projections.reservations import ReservationsProjection
from projections.sagas import SagasProjection
from projections.shows import ShowsProjection

PROJECTIONS: tuple[type[DocumentProjection], ...] = (
    CommandRegistryProjection,
    ShowsProjection,
    ReservationsProjection,
    SagasProjection,
)
PROJECTIONS_BY_NAME = {projection.name: projection for projection in PROJECTIONS}


def present(aggregate: Any) -> dict[str, Any] | None:
    """``aggregate`` as its read model presents it; None when no read model keeps it."""
    for projection in PROJECTIONS:
        if isinstance(aggregate, projection.aggregate):
            return projection.present(aggregate)
    return None
