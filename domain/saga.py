"""Saga: the base of the event-sourced process managers.

A saga is an aggregate whose every event is a decision: it names the commands the
decision issues (``commands``, each made by :func:`issue`), so that the saga runner can
record the decision and its commands in one transaction. ``issued`` holds the commands
of the latest decision (what the saga now waits on), ``decisions`` every decision with
its time and the types of the commands it issued, and ``owner`` the client on whose
behalf it runs. Every handler is guarded by the saga's state, so an event delivered
again finds its step taken and decides nothing.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate


def issue(command_type: str, key: str, **payload: Any) -> dict[str, Any]:
    """A command a saga issues; ``key`` (unique within the saga) makes issuing it twice
    impossible, since the command's id derives from the saga's id and the key."""
    return {"type": command_type, "key": key, "payload": payload}


class Saga(Aggregate):
    """A process manager: see the module's docstring for what its subclasses keep."""

    if TYPE_CHECKING:
        # Set by each subclass's creation event; declared here for the runtime's types
        # only (the library would make an __init__ of annotations seen when it runs).
        owner: str | None
        state: StrEnum
        issued: list[dict[str, Any]]
        decisions: list[dict[str, Any]]

    class Event(Aggregate.Event):
        """Base of a saga's events: each one is a decision, kept in ``decisions``."""

        def mutate(self, aggregate: Any) -> Any:
            saga = super().mutate(aggregate)
            assert saga is not None
            decision = {
                "at": self.timestamp.isoformat(),
                "name": type(self).__name__,
                "issued": [c["type"] for c in getattr(self, "commands", [])],
            }
            # Deadlines set, and the runner's time when one was found passed.
            for name in ("deadline_at", "fired_at"):
                value = getattr(self, "at" if name == "fired_at" else name, None)
                if value is not None:
                    decision[name] = value.isoformat()
            saga.decisions.append(decision)
            return saga

    @property
    def is_finished(self) -> bool:
        """True once the saga has nothing left to do."""
        raise NotImplementedError

    def deadline_passed(self, now: datetime) -> None:
        """The saga runner found one of the saga's deadlines passed at ``now``; a saga
        with deadlines decides here (guarded, like any handler), others ignore it."""
