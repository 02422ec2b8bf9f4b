"""The saga runner: follows the event log and drives the sagas of every slice.

Each event goes to the slices that react to it (:mod:`application.saga_slice`); their
policies start sagas, let them decide, or issue commands of their own. A decision is
saved together with the commands it issues in one transaction. Those commands go
through the same pipeline as a client's (relay, workers, registry), with the saga's id
as correlation id and the causing event as causation id. A redelivered event finds the
step taken (the saga's guards) or the commands already issued (their ids derive from
the saga and the step), and changes nothing.

It also fires deadlines: the sagas whose deadline has passed (``due``) are told so.

Split into segments (:mod:`application.segment`), each runner takes the events whose
slice's key (:meth:`~application.saga_slice.SagaSlice.key_of`) falls in its segment, and
the deadlines of the sagas whose id does. A decision that finds its saga changed since
it was loaded (a deadline fired by another segment, by this runner's deadline thread)
is taken again on the saga as it now is: optimistic concurrency on the saga, not the
timing of the two, keeps both decisions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from application import log_context
from application.command import Command
from application.pipeline import CommandPipeline
from application.ports import Services
from application.saga_slice import SagaSlice
from application.segment import WHOLE, Segment
from application.submission import Submission, command_id_of
from application.unit_of_work import find_aggregate
from domain.saga import Saga

logger = logging.getLogger(__name__)
# Who submits the commands sagas issue, in the registry and in their ids.
SAGA_CLIENT = "saga"
# A decision is taken again this many times at most when its saga keeps changing under it.
CONFLICT_RETRIES = 10


class SagaConflictError(Exception):
    """Raised when a saga changed under each of :data:`CONFLICT_RETRIES` decisions."""


def event_class(aggregate: type[Aggregate], name: str) -> type[Aggregate.Event]:
    """The event class ``@event`` made on ``aggregate``; a rename fails here, at import."""
    cls = getattr(aggregate, name)
    if not (isinstance(cls, type) and issubclass(cls, Aggregate.Event)):
        raise TypeError(f"{aggregate.__name__}.{name} is not an event class")
    return cls


class SagaStore(Protocol):
    """Where the runner reads aggregates and records its decisions: the event store when
    it runs, a capture of the decisions when sagas are replayed (a ``dry_run``, to which
    the runner hands no commands: the decisions name them)."""

    dry_run: bool

    def get(self, aggregate_id: UUID, version: int | None = None) -> Aggregate | None:
        """The aggregate as of ``version`` (its latest without one), or None if none."""
        ...

    def save(self, *aggregates: Aggregate) -> None:
        """Record the aggregates' new events in one transaction; raises
        :class:`~eventsourcing.persistence.IntegrityError` when one was recorded already."""
        ...


class ApplicationStore:
    """The :class:`SagaStore` of the event store."""

    dry_run = False

    def __init__(self, app: Application[Any]) -> None:
        self.app = app

    def get(self, aggregate_id: UUID, version: int | None = None) -> Aggregate | None:
        return find_aggregate(self.app, aggregate_id, version)

    def save(self, *aggregates: Aggregate) -> None:
        self.app.save(*aggregates)


class SagaRunner:
    """Routes events to the ``slices`` and records what their sagas decide; it carries
    out the :class:`~application.saga_slice.SagaSteps` their policies take. ``due``
    names the sagas whose deadline has passed; ``services`` are the ports and settings
    the slices read (the pipeline's unless given: a replay may try other settings)."""

    name = "saga_runner"
    # The log follower takes each event under the span of the command's run that saved
    # it (infrastructure/following.py), so a saga's next commands continue its trace.
    follows_causes = True

    def __init__(
        self,
        view: TrackingRecorder | None,
        store: SagaStore,
        pipeline: CommandPipeline,
        slices: Sequence[SagaSlice[Any]],
        due: Callable[[datetime], Iterable[UUID]] = lambda now: (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        services: Services | None = None,
        segment: Segment = WHOLE,
    ) -> None:
        self.view = view
        self.segment = segment
        self.name = type(self).name + segment.label
        self._services = services
        self.store = store
        self.pipeline = pipeline
        self.slices = tuple(slices)
        self.due = due
        self.clock = clock
        issued = {name for s in self.slices for name in s.issues}
        unknown = issued - {spec.name for spec in pipeline.catalog}
        if unknown:
            # Fail at start-up, not when a saga first issues the missing command.
            raise LookupError(f"the sagas issue unregistered commands: {sorted(unknown)}")

    def event_topics(self) -> tuple[str, ...]:
        """The events the slices react to."""
        routed = {cls for s in self.slices for cls in s.events}
        if any(s.failed_commands for s in self.slices):
            routed.add(Command.CommandFailed)
        return tuple(sorted(get_topic(cls) for cls in routed))

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Decide on ``domain_event``, then advance the runner's position."""
        self.route(domain_event)
        assert self.view is not None, "a runner that follows the log tracks its position"
        self.view.insert_tracking(tracking)

    def route(self, event: Any) -> None:
        """Hand ``event`` to the slices that react to it."""
        failure = isinstance(event, Command.CommandFailed)
        chosen = [
            s
            for s in self.slices
            if (s.failed_commands if failure else isinstance(event, s.events))
        ]
        if not chosen:
            return
        loaded: list[Any] = []

        def source_of() -> Any:
            if not loaded:
                loaded.append(self.store.get(event.originator_id, version=event.originator_version))
            return loaded[0]

        if self.segment.count > 1:
            chosen = [s for s in chosen if self.segment.owns(s.key_of(event, source_of))]
            if not chosen:
                return
        source = source_of()
        if failure:
            chosen = [s for s in chosen if source.command_type in s.failed_commands]
        for found in chosen:
            found.react(event, source, self)

    # --- the steps a slice's policies take (application.saga_slice.SagaSteps) -----------

    @property
    def services(self) -> Services:
        """The slices' ports and settings."""
        services = self._services or self.pipeline.services
        if services is None:
            raise LookupError("the saga runner's pipeline was built without services")
        return services

    def now(self) -> datetime:
        """The runner's time."""
        return self.clock()

    def get(self, aggregate_id: UUID, version: int | None = None) -> Aggregate | None:
        """An aggregate as of ``version`` from the runner's store."""
        return self.store.get(aggregate_id, version=version)

    def start(self, saga: Saga, cause: str) -> int:
        """Record ``saga``, new, unless a saga with its id exists."""
        if self._saga(saga.id) is not None:
            return 0
        try:
            return self._record(saga, cause)
        except IntegrityError:
            logger.info("saga %s: started already (on %s)", saga.id, cause)
            return 0

    def decide(self, saga_id: UUID, cause: str, decide: Callable[[Any], None]) -> int:
        """Let saga ``saga_id`` decide and record the decision; 1 if it decided."""
        for _ in range(CONFLICT_RETRIES):
            saga = self._saga(saga_id)
            if saga is None:
                return 0
            version = saga.version
            decide(saga)
            if saga.version == version:
                return 0  # the step was taken already: a redelivered event
            try:
                return self._record(saga, cause)
            except IntegrityError:
                # Recorded by another decision since it was loaded: decide again on what
                # it is now (its guards find the step taken, if it was this one).
                logger.info("saga %s changed while deciding on %s: deciding again", saga_id, cause)
        raise SagaConflictError(f"saga {saga_id} changed under {CONFLICT_RETRIES} decisions")

    def issue(
        self, command_type: str, key: str, payload: dict[str, Any], cause: str, owner: str | None
    ) -> None:
        """Issue a command of a policy's, once per ``key``."""
        try:
            command = _prepare(self.pipeline, command_type, key, payload, cause, owner)
            self.store.save(command)
        except IntegrityError:
            logger.info("%s %s was issued already", command_type, key)
        else:
            if not self.store.dry_run:
                self.pipeline.saved(command)

    # --- deadlines ----------------------------------------------------------------------

    def fire_deadlines(self) -> int:
        """Tell the sagas whose deadline has passed; returns how many decided."""
        now = self.clock()
        return sum(
            self.deadline_reached(saga_id, now)
            for saga_id in self.due(now)
            if self.segment.owns(saga_id)
        )

    def deadline_reached(self, saga_id: UUID, now: datetime) -> int:
        """Tell saga ``saga_id`` that it is ``now``; 1 if it decided."""
        return self.decide(saga_id, f"deadline:{now.isoformat()}", lambda s: s.deadline_passed(now))

    def _record(self, saga: Saga, cause: str) -> int:
        """Save ``saga``'s decision with the commands it issues; raises
        :class:`IntegrityError` when the saga changed since it was loaded."""
        if self.store.dry_run:
            # The decision names its commands: checking their payloads is all a dry
            # run needs (an invalid one fails here as it would when issued).
            for c in saga.issued:
                self.pipeline.catalog.get(c["type"]).payload.model_validate(c["payload"])
            commands: list[Command] = []
        else:
            commands = [
                saga_command(self.pipeline, saga, c["type"], c["key"], c["payload"], cause)
                for c in saga.issued
            ]
        self.store.save(saga, *commands)
        with log_context.bound(correlation_id=saga.id, causation_id=cause):
            logger.debug("saga %s decided (version %d)", saga.id, saga.version)
        for command in commands:
            self.pipeline.saved(command)
            with log_context.bound(**log_context.of_command(command)):
                logger.info("saga %s issued %s", saga.id, command.command_type)
        return 1

    def _saga(self, saga_id: UUID) -> Saga | None:
        found = self.store.get(saga_id)
        return found if isinstance(found, Saga) else None


def saga_command(
    pipeline: CommandPipeline,
    saga: Saga,
    command_type: str,
    key: str,
    payload: dict[str, Any],
    cause: str,
) -> Command:
    """The command ``saga`` issues under its own ``key``, on behalf of its owner, with
    the saga as correlation and ``cause`` as causation; not yet saved."""
    return _prepare(
        pipeline, command_type, issued_key(saga.id, key), payload, cause, saga.owner, saga.id
    )


def _prepare(
    pipeline: CommandPipeline,
    command_type: str,
    idempotency_key: str,
    payload: dict[str, Any],
    cause: str,
    owner: str | None,
    correlation_id: UUID | None = None,
) -> Command:
    spec = pipeline.catalog.get(command_type)
    return pipeline.prepare(
        Submission(
            spec=spec,
            payload=spec.payload.model_validate(payload),
            submitted_by=SAGA_CLIENT,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
            causation_id=cause,
            owner=owner,
        )
    )


def issued_key(saga_id: UUID, key: str) -> str:
    """The idempotency key of the command a saga issues under its own ``key``."""
    return f"{saga_id}:{key}"


def issued_command_id(saga_id: UUID, key: str) -> UUID:
    """The id of the command saga ``saga_id`` issues under its own ``key``."""
    return command_id_of(SAGA_CLIENT, issued_key(saga_id, key))
