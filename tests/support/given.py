"""Given / when / then for aggregates and sagas, the one way unit tests set them up.

*Given* the history (the aggregate's creation and what happened next, or recorded
events), *when* a command (a method of the aggregate) or an event (a saga's reaction to
it), *then* the events that triggered, and for a saga the commands each decision issued.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from eventsourcing.domain import Aggregate

A = TypeVar("A", bound=Aggregate)


@dataclass
class Then(Generic[A]):
    """What a *when* did: the aggregate after it, the events it triggered, what it returned."""

    aggregate: A
    events: list[Any]
    returned: Any = None

    @property
    def names(self) -> list[str]:
        """The triggered events' class names, in order."""
        return [type(e).__name__ for e in self.events]

    @property
    def decisions(self) -> list[tuple[str, list[str]]]:
        """Each triggered event with the command types it issued (a saga's decisions)."""
        return [
            (type(e).__name__, [c["type"] for c in getattr(e, "commands", [])]) for e in self.events
        ]


@dataclass
class Given(Generic[A]):
    """An aggregate with its history, its events already taken."""

    aggregate: A
    history: list[Any] = field(default_factory=list)

    def when(self, step: Callable[[A], Any]) -> Then[A]:
        """Run ``step`` on the aggregate: a command, or a saga's reaction to an event."""
        returned = step(self.aggregate)
        return Then(self.aggregate, list(self.aggregate.collect_events()), returned)


def created(start: Callable[[], A]) -> Then[A]:
    """*When* the aggregate is created: the events its creation triggered."""
    aggregate = start()
    return Then(aggregate, list(aggregate.collect_events()))


def given(start: Callable[[], A], *steps: Callable[[A], Any]) -> Given[A]:
    """The aggregate ``start`` creates, taken through ``steps``: its history."""
    aggregate = start()
    for step in steps:
        step(aggregate)
    return Given(aggregate, list(aggregate.collect_events()))


def given_events(events: Sequence[Any]) -> Given[Any]:
    """The aggregate the recorded ``events`` make, rebuilt as the repository does."""
    aggregate: Any = None
    for event in events:
        aggregate = event.mutate(aggregate)
    return Given(aggregate, list(events))
