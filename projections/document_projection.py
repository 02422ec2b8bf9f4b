"""Projections that keep one document per aggregate, re-rendered at each of its events.

The aggregate is loaded at the version of the event being processed, so replaying the
log from zero yields exactly the rows that following it live did.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import Repository
from eventsourcing.domain import Aggregate, CanInitAggregate
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic
from pydantic import BaseModel

from application import log_context
from application.command import Command
from application.ports import CommandMetrics, Uncounted
from application.queries import Reader
from application.segment import WHOLE, Segment
from projections.document_view import Documents, DocumentView, Row

logger = logging.getLogger(__name__)


class DocumentProjection(Projection[Any]):
    """Renders the aggregate of each event into its view's document and columns.

    A subclass names its ``aggregate``, its PostgreSQL ``view_class``, the ``document``
    model its documents conform to (the API's response schema), and how to
    :meth:`present` an aggregate as one. With a ``path`` (a template of one ``{id}``
    whose values :meth:`key` maps to aggregate ids), clients read its documents there;
    a ``private`` view's documents have a ``client``, and only that client sees them.
    """

    aggregate: ClassVar[type[Aggregate]]
    view_class: ClassVar[type[DocumentView]]
    document: ClassVar[type[BaseModel]]
    path: ClassVar[str | None] = None
    private: ClassVar[bool] = False
    id_schema: ClassVar[dict[str, Any]] = {"type": "string"}

    # Aggregates kept at hand, the most recently applied: a command's or a saga's events
    # come seconds apart, so this covers what is in flight at thousands a second, and
    # keeps a projector's memory flat when every command makes a new aggregate.
    cache_size: ClassVar[int] = 2_000

    def __init__(
        self,
        view: Documents,
        repository: Repository[Any],
        segment: Segment = WHOLE,
        metrics: CommandMetrics | None = None,
    ) -> None:
        super().__init__(view)
        self.documents = view
        self.repository = repository
        # What the view makes visible is counted (the registry's outcomes), not replays.
        self.metrics: CommandMetrics = metrics or Uncounted()
        # Of a view split into segments (application/segment.py), this applies the
        # aggregates of ``segment`` only, and is named for it (its lease, its stalls).
        self.segment = segment
        self.name = type(self).name + segment.label
        # Aggregates as of the last event applied to them, most recent last.
        self._recent: OrderedDict[Any, Any] = OrderedDict()

    @classmethod
    def event_topics(cls) -> tuple[str, ...]:
        """The topics of the events this projection follows."""
        return tuple(
            get_topic(value)
            for value in vars(cls.aggregate).values()
            if isinstance(value, type) and issubclass(value, Aggregate.Event)
        )

    @classmethod
    def present(cls, aggregate: Any) -> dict[str, Any]:
        """The document of ``aggregate``, as clients read it."""
        raise NotImplementedError

    @classmethod
    def column_values(cls, aggregate: Any) -> dict[str, Any]:
        """The values of the view's indexed columns for ``aggregate``."""
        return {}

    @classmethod
    def key(cls, ident: str) -> UUID | None:
        """The aggregate id of the document a client calls ``ident``; None if none can be."""
        create_id = getattr(cls.aggregate, "create_id", None)
        return create_id(ident) if create_id is not None else None

    @classmethod
    def find(cls, read: Reader, key: UUID) -> dict[str, Any] | None:
        """The document of ``key`` with its ``position``, as :attr:`document` has it."""
        return read.get(cls.name, key)

    @classmethod
    def stored(cls, aggregate: Any) -> dict[str, Any]:
        """What the view keeps for ``aggregate``: its document, unless a view keeps more."""
        return cls.present(aggregate)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.process_events([(domain_event, tracking)])

    def process_events(self, batch: list[tuple[Any, Tracking]]) -> None:
        """Apply several events in one transaction: each aggregate's last document, and
        the position of the last event (of a segment: the events of its aggregates, and
        the position of the batch's last event, so that it moves past the others')."""
        latest: dict[UUID, tuple[Any, int]] = {}
        mine = batch
        if self.segment.count > 1:
            mine = [(e, t) for e, t in batch if self.segment.owns(e.originator_id)]
        try:
            for domain_event, tracking in mine:
                aggregate = self._at_version_of(domain_event)
                # The next event of this aggregate in the batch applies to this state.
                self._recent[domain_event.originator_id] = aggregate
                latest[domain_event.originator_id] = (aggregate, tracking.notification_id)
            # Only each aggregate's last state is written: rendered once, not per event.
            rows: dict[UUID, Row] = {
                key: (self.stored(aggregate), self.column_values(aggregate), position)
                for key, (aggregate, position) in latest.items()
            }
            self.documents.upsert_many(rows, batch[-1][1])
            self.written([aggregate for aggregate, _ in latest.values()])
            if logger.isEnabledFor(logging.DEBUG):
                self._log_written(latest)
        except BaseException:
            # The view took none of them: forget the states it does not have.
            for domain_event, _ in mine:
                self._recent.pop(domain_event.originator_id, None)
            raise
        for key in latest:
            self._recent.move_to_end(key)
        while len(self._recent) > self.cache_size:
            self._recent.popitem(last=False)

    def written(self, aggregates: list[Any]) -> None:
        """Called with the aggregates whose documents a batch wrote, once it committed."""

    def _log_written(self, latest: dict[UUID, tuple[Any, int]]) -> None:
        for key, (aggregate, position) in latest.items():
            about = log_context.of_command(aggregate) if isinstance(aggregate, Command) else {}
            with log_context.bound(**about):
                logger.debug("%s: %s at %d is visible", self.name, key, position)

    def _at_version_of(self, domain_event: Any) -> Any:
        """The aggregate as of ``domain_event``: the previous state plus this event when it
        is at hand (as a replay would apply it), else loaded from the store."""
        previous = self._recent.pop(domain_event.originator_id, None)
        if isinstance(domain_event, CanInitAggregate):
            # The first event needs no read: a rebuild otherwise loads every aggregate.
            return domain_event.mutate(None)
        if previous is not None and previous.version == domain_event.originator_version - 1:
            return domain_event.mutate(previous)
        return self.repository.get(
            domain_event.originator_id, version=domain_event.originator_version
        )
