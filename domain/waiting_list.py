"""A show's waiting list: customers whose seats were taken, first come first served."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.ids import aggregate_id


class WaitingList(Aggregate):
    """Reservations waiting for their seats, in the order they joined."""

    @staticmethod
    def create_id(show_id: str, **_: Any) -> UUID:
        """The waiting list of show ``show_id``."""
        return aggregate_id("waiting-list", show_id)

    @event("WaitingListOpened")
    def __init__(self, show_id: str) -> None:
        self.show_id = show_id
        self.entries: list[dict[str, Any]] = []

    @property
    def reservation_ids(self) -> list[str]:
        """Who waits, first in line first."""
        return [e["reservation_id"] for e in self.entries]

    def join(self, reservation_id: str, seats: list[str]) -> None:
        """Join the end of the line; joining twice changes nothing."""
        if reservation_id not in self.reservation_ids:
            self._joined(reservation_id=reservation_id, seats=seats)

    @event("CustomerJoinedWaitingList")
    def _joined(self, reservation_id: str, seats: list[str]) -> None:
        self.entries.append({"reservation_id": reservation_id, "seats": seats})

    def leave(self, reservation_id: str) -> None:
        """Leave the line; leaving when not in it changes nothing."""
        if reservation_id in self.reservation_ids:
            self._left(reservation_id=reservation_id)

    @event("CustomerLeftWaitingList")
    def _left(self, reservation_id: str) -> None:
        self.entries = [e for e in self.entries if e["reservation_id"] != reservation_id]

    def first_fitting(self, available: list[str]) -> str | None:
        """The first in line all of whose seats are available, if any."""
        free = set(available)
        for entry in self.entries:
            if set(entry["seats"]) <= free:
                return str(entry["reservation_id"])
        return None
