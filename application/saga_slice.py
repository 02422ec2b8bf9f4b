"""What a saga slice declares, and what the saga runtime does for it.

A slice is one kind of saga as the runtime sees it: the :class:`~domain.saga.Saga` class
it runs, the events it reacts to (domain events, and the failures of some of the commands
it issues), the command types it issues, and its policies: :meth:`SagaSlice.react` turns
an event into steps (start a saga, let one decide, issue a command of its own). The
runtime (:class:`~application.saga_runner.SagaRunner`) routes events to the slices and
records what they decide; the replay (:mod:`application.saga_replay`) feeds a saga's
recorded inputs to its slice again. Neither knows any domain name.

A slice is registered in the command registry beside its commands
(``catalog.register_saga(slice)``), so a module of ``COMMAND_MODULES`` can add one.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from application.ports import Services
from domain.saga import Saga

S = TypeVar("S", bound=Saga)


class SagaSteps(Protocol):
    """What a slice's policies may do, carried out by the saga runtime."""

    @property
    def services(self) -> Services:
        """The ports and settings of the pipeline (the payment deadline, say)."""
        ...

    def now(self) -> datetime:
        """The runner's time: the real one, or a replayed input's."""
        ...

    def get(self, aggregate_id: UUID, version: int | None = None) -> Aggregate | None:
        """An aggregate as of ``version`` (its latest without one), or None."""
        ...

    def start(self, saga: Saga, cause: str) -> int:
        """Record a new ``saga`` (and the commands its first decision issues) unless one
        with its id exists; 1 if it was recorded."""
        ...

    def decide(self, saga_id: UUID, cause: str, decide: Callable[[Any], None]) -> int:
        """Let saga ``saga_id`` decide (``decide`` calls one of its handlers) and record
        the decision with its commands; 1 if it decided, 0 if there is no such saga or
        its guards found the step taken."""
        ...

    def issue(
        self, command_type: str, key: str, payload: dict[str, Any], cause: str, owner: str | None
    ) -> None:
        """Issue a command outside any saga (a policy's), once per ``key``."""
        ...


class SagaSlice(ABC, Generic[S]):
    """One kind of saga. Subclasses set the class attributes and write :meth:`react`
    and :meth:`inputs_of`; an instance may run a candidate saga class (a fix tried on
    the recorded history) through :meth:`running`."""

    saga_class: type[S]
    # The domain events routed to the slice (their subclasses too).
    events: ClassVar[tuple[type[Aggregate.Event], ...]]
    # The types of the commands its sagas issue: the runner refuses to start without them.
    issues: ClassVar[frozenset[str]]
    # The issued command types whose failure (``CommandFailed``) is routed to the slice.
    failed_commands: ClassVar[frozenset[str]] = frozenset()
    # The saga's decisions on a passed deadline, which a replay fires again.
    deadline_events: ClassVar[tuple[type[Aggregate.Event], ...]] = ()
    # What a saga is started for: the name of its key (``reservation_id``) in reports.
    subject: ClassVar[str]

    def running(self, saga_class: type[Saga]) -> Self:
        """This slice running ``saga_class``, a subclass of its own saga class."""
        if not issubclass(saga_class, self.saga_class):
            raise TypeError(f"not a {self.saga_class.__name__} class")
        found = copy.copy(self)
        found.saga_class = saga_class
        return found

    def saga_id(self, subject: str) -> UUID:
        """The id of the saga started for ``subject``."""
        found: UUID = self.saga_class.create_id(subject)
        return found

    def key_of(self, event: Any, source: Callable[[], Any]) -> UUID:
        """The id by which a saga runner split into segments (SAGA_SEGMENTS) gives
        ``event`` to one of them: every event one saga decides on must give the same
        key, so that its decisions are taken in the order of the log. The event's
        aggregate by default; ``source()`` loads the aggregate that recorded it."""
        key: UUID = event.originator_id
        return key

    @abstractmethod
    def subject_of(self, saga: S) -> str:
        """The key ``saga`` was started for."""

    @abstractmethod
    def react(self, event: Any, source: Any, steps: SagaSteps) -> None:
        """Take the steps ``event`` calls for; ``source`` is the aggregate that recorded
        it, as of the event (the :class:`~application.command.Command` of a failure)."""

    @abstractmethod
    def inputs_of(self, saga: S) -> Sequence[UUID]:
        """The aggregates whose events (of :attr:`events`) a replay of ``saga`` feeds it."""
