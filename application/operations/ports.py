"""The ports of the operator's use cases, and the :class:`Operator` that holds them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import Notification

from application.command import Command
from application.pipeline import CommandPipeline
from application.queries import Reader, ViewPositions
from application.saga_slice import SagaSlice

# Rows read per page when an operation walks a whole view.
WALK_PAGE = 1_000


class ReadSide(Reader, ViewPositions, Protocol):
    """The views, read and measured (:class:`~projections.read_models.ReadModels`)."""


class History(Protocol):
    """What the event store recorded (:class:`~infrastructure.history.RecordedHistory`)."""

    def saved_with(self, aggregate_id: UUID, topic: str) -> list[Notification]:
        """The other events saved in one transaction with the last event of ``topic``
        of ``aggregate_id`` (none where the store keeps no transactions)."""
        ...

    def pending(
        self, after: int, topics: Sequence[str], cap: int
    ) -> tuple[int, Notification | None]:
        """How many events (of ``topics`` only, if given) the log holds after position
        ``after``, counted up to ``cap``, and the first of them (None: none)."""
        ...

    def events_of(
        self, aggregate_ids: Sequence[UUID], topics: Sequence[str] = ()
    ) -> dict[UUID, list[Any]]:
        """The domain events (of ``topics`` only, if given) of each aggregate."""
        ...


class ViewBehindError(RuntimeError):
    """Raised by :meth:`Rebuild.swap` when the live view has not reached the rebuilt
    one's position."""


class Difference(Protocol):
    """How a rebuilt view differs from the live one."""

    def as_dict(self) -> dict[str, Any]:
        """As JSON-ready data."""
        ...


class Rebuild(Protocol):
    """A view rebuilt from zero beside the live one (:class:`~infrastructure.rebuild.
    ProjectionRebuild`)."""

    def head(self) -> int:
        """The last event of the log."""
        ...

    def start(self) -> None:
        """Begin with an empty shadow."""
        ...

    def count(self, after: int, upto: int) -> int:
        """How many events of the view's topics lie in ``(after, upto]``."""
        ...

    def catch_up(
        self, upto: int | None = None, progress: Callable[[int], None] = lambda applied: None
    ) -> int:
        """Apply the events up to ``upto`` (the head when None); how many were applied."""
        ...

    def position(self) -> int:
        """How far the shadow has applied the log."""
        ...

    def await_live(self, position: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the live view to reach ``position``."""
        ...

    def diff(self, limit: int = 10) -> Difference:
        """The shadow against the live view, up to ``limit`` differing rows shown."""
        ...

    def swap(self) -> int:
        """Put the shadow in the live view's place; its position. Raises
        :class:`ViewBehindError`."""
        ...


@dataclass(frozen=True)
class Operator:
    """Everything the operator's use cases reach, filled in by the composition root."""

    app: Application[Any]
    pipeline: CommandPipeline
    read: ReadSide
    history: History
    # A rebuild of a projection class's view (the deployed class, or a candidate fix
    # with the same name and view).
    rebuilding: Callable[[type[Any]], Rebuild]
    slices: Sequence[SagaSlice[Any]]
    # The command registry's document of a command, and a saga's with its timeline.
    present_command: Callable[[Command], dict[str, Any]]
    saga_document: Callable[[UUID], dict[str, Any] | None]
    # The followers failing on an event now, by name (the event, the error, the tries).
    stalled: Callable[[], dict[str, dict[str, Any]]]
    # The single-active parts' leases: name, holder, token, age, time to lapse.
    leases: Callable[[], list[dict[str, Any]]] = list
    # The followers that are not views (the relay, the saga runner): each one's
    # position (its slowest segment's) and the topics it follows.
    followers: Callable[[], dict[str, tuple[int, tuple[str, ...]]]] = dict
    commands_view: str = "command_registry"
    sagas_view: str = "sagas"

    def walk(self, view: str, filters: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every document of ``view`` matching ``filters``, oldest first."""
        cursor: str | None = None
        while True:
            documents, cursor = self.read.page(view, filters, cursor, WALK_PAGE)
            yield from documents
            if cursor is None:
                return
