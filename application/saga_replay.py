"""Saga replay: what the saga code at hand would have decided on the recorded history.

Each saga is rebuilt from its recorded inputs (the events of the aggregates its slice
names, of the types the slice reacts to; the failures of the commands it issued whose
failure the slice reacts to; and the deadlines the runner fired for it) by the saga
runner itself, running the saga's slice only, over a store that captures what the
runner would save instead of saving it: a dry run that changes nothing and issues
nothing. The replayed decisions (each one's name and the commands it issues, with
their keys and payloads) and the final state are compared with the recorded ones.

Inputs are fed in the order of their timestamps (a reservation's events in version
order). A deadline is an input too: the runner found it passed at the time of the
recorded ``SagaExpiring``, so the replay fires it there, at the first moment the
replayed saga could have seen it: once it has taken as many steps as the recorded saga
had, or before the first input recorded after it, whichever comes first; and there the
deadline has passed (its length is the runner's setting, not a rule of the saga's). The
replay invents no other deadline: a saga that a changed rule leaves charging past its
deadline shows up as a different final state. The deadlines' values (the runner's
clock plus the payment deadline) are not compared; they depend on when the runner saw
an event, not on rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from application.command import Command
from application.pipeline import CommandPipeline
from application.ports import Services
from application.saga_replay_report import Decision, ReplayedSaga
from application.saga_runner import SagaRunner, issued_command_id
from application.saga_slice import SagaSlice
from domain.saga import Saga

FAILED_TOPIC = get_topic(Command.CommandFailed)
# Sagas read from the store in one go: a few reads per batch, not per saga.
BATCH = 500


class EventHistory(Protocol):
    """Whole histories of aggregates, as the event store has them."""

    def events_of(
        self, aggregate_ids: Sequence[UUID], topics: Sequence[str] = ()
    ) -> dict[UUID, list[Any]]:
        """The domain events (of ``topics`` only, if given) of each aggregate that has
        any, in version order."""
        ...


class CapturingStore:
    """The saga runner's store in a replay: aggregates as of any version from the
    histories read, sagas as the replay leaves them, saves captured and not made."""

    dry_run = True

    def __init__(self, histories: Mapping[UUID, list[Any]]) -> None:
        self.histories = histories
        self.sagas: dict[UUID, Saga] = {}
        self.decisions: list[Decision] = []
        self.cause: str | None = None
        self._built: dict[UUID, Aggregate] = {}

    def get(self, aggregate_id: UUID, version: int | None = None) -> Aggregate | None:
        saga = self.sagas.get(aggregate_id)
        if saga is not None:
            return saga
        events = self.histories.get(aggregate_id)
        if not events:
            return None
        version = events[-1].originator_version if version is None else version
        built = self._built.get(aggregate_id)
        if built is None or built.version > version:
            built = None
        start = 0 if built is None else built.version
        # A history is whole, so an aggregate's version n is its n-th event.
        for event in events[start:version]:
            built = event.mutate(built)
        if built is None:
            return None
        self._built[aggregate_id] = built
        return built

    def save(self, *aggregates: Aggregate) -> None:
        for aggregate in aggregates:
            if isinstance(aggregate, Saga):
                for event in aggregate.collect_events():
                    self.decisions.append(Decision.of(event, self.cause))
                self.sagas[aggregate.id] = aggregate
            # The commands a decision issues are in the decision: nothing is sent.

    def saga_version(self, saga_id: UUID) -> int:
        """The replayed saga's version, 0 before it starts."""
        saga = self.sagas.get(saga_id)
        return 0 if saga is None else saga.version


@dataclass
class _Recorded:
    """A recorded saga, the slice that runs it, and the ids of its replay's inputs."""

    saga_id: UUID
    events: list[Any]
    saga: Any
    slice: SagaSlice[Any] | None
    # The aggregates whose events it is fed, and the issued commands whose failure is.
    inputs: list[UUID]
    failable: list[UUID]


class SagaReplayer:
    """Replays sagas with the ``slices`` (the deployed ones, or one running a candidate
    fix) and reports per saga how its decisions compare with the recorded ones;
    ``services`` are the settings the slices read (the pipeline's unless given)."""

    def __init__(
        self,
        history: EventHistory,
        pipeline: CommandPipeline,
        slices: Sequence[SagaSlice[Any]],
        services: Services | None = None,
    ) -> None:
        self.history = history
        self.pipeline = pipeline
        self.slices = tuple(slices)
        self.services = services

    def replay_all(
        self,
        saga_ids: Sequence[UUID],
        progress: Callable[[int], None] = lambda done: None,
    ) -> Iterator[ReplayedSaga]:
        """Replay ``saga_ids`` in batches; ``progress`` hears how many each batch did.
        Ids of no saga are left out."""
        for start in range(0, len(saga_ids), BATCH):
            batch = saga_ids[start : start + BATCH]
            yield from self.replay(batch)
            progress(len(batch))

    def slice_of(self, saga: Saga) -> SagaSlice[Any] | None:
        """The slice that runs ``saga``'s kind (a candidate class of it, maybe)."""
        for found in self.slices:
            if isinstance(saga, found.saga_class) or issubclass(found.saga_class, type(saga)):
                return found
        return None

    def replay(self, saga_ids: Sequence[UUID]) -> list[ReplayedSaga]:
        """Replay a batch of sagas (four reads of the store in all)."""
        histories = self.history.events_of(saga_ids)
        found = [self._recorded(i, histories[i]) for i in saga_ids if i in histories]
        # Only failures are inputs: read whole only the commands that failed.
        failed = self.history.events_of(
            [command_id for saga in found for command_id in saga.failable], (FAILED_TOPIC,)
        )
        inputs = self.history.events_of(
            [aggregate_id for saga in found for aggregate_id in saga.inputs] + list(failed)
        )
        return [self._replay_one(saga, inputs) for saga in found]

    def _recorded(self, saga_id: UUID, events: list[Any]) -> _Recorded:
        saga: Any = None
        for event in events:
            saga = event.mutate(saga)
        chosen = self.slice_of(saga)
        if chosen is None:
            return _Recorded(saga_id, events, saga, None, [], [])
        failable = [
            issued_command_id(saga_id, c["key"])
            for event in events
            for c in getattr(event, "commands", [])
            if c["type"] in chosen.failed_commands
        ]
        return _Recorded(saga_id, events, saga, chosen, list(chosen.inputs_of(saga)), failable)

    def _replay_one(self, recorded: _Recorded, inputs: Mapping[UUID, list[Any]]) -> ReplayedSaga:
        chosen = recorded.slice
        result = ReplayedSaga(
            saga_id=recorded.saga_id,
            subject=chosen.subject_of(recorded.saga) if chosen else str(recorded.saga_id),
            subject_name=chosen.subject if chosen else "saga_id",
            recorded=[Decision.of(event) for event in recorded.events],
            recorded_state=recorded.saga.state.value,
        )
        try:
            if chosen is None:
                raise LookupError(f"no saga slice runs {type(recorded.saga).__name__}")
            self._run(result, chosen, recorded, inputs)
        except Exception as error:  # noqa: BLE001 - reported per saga; the others go on
            result.error = f"{type(error).__name__}: {error}"
        return result

    def _run(
        self,
        result: ReplayedSaga,
        chosen: SagaSlice[Any],
        recorded: _Recorded,
        inputs: Mapping[UUID, list[Any]],
    ) -> None:
        store = CapturingStore(inputs)
        now: list[datetime] = [recorded.events[0].timestamp]
        runner = SagaRunner(
            None, store, self.pipeline, [chosen], clock=lambda: now[0], services=self.services
        )
        events: list[Any] = [
            event
            for aggregate_id in recorded.inputs
            for event in inputs.get(aggregate_id, [])
            if isinstance(event, chosen.events)
        ]
        failures = [
            event
            for command_id in recorded.failable
            for event in inputs.get(command_id, [])
            if isinstance(event, Command.CommandFailed)
        ]
        # sorted() is stable: an aggregate's events of one instant keep version order.
        feed = sorted(events + failures, key=lambda e: e.timestamp)
        # (the recorded saga's version, when it was recorded, the runner's time then)
        ticks = [
            (e.originator_version, e.timestamp, getattr(e, "at", None) or e.timestamp)
            for e in recorded.events
            if isinstance(e, chosen.deadline_events)
        ]

        def fire_tick() -> None:
            _, _, at = ticks.pop(0)
            # Where the runner found the deadline passed, it has passed: its length is
            # the runner's setting (maybe changed since), not a rule of the saga's.
            deadline = getattr(store.sagas.get(result.saga_id), "deadline_at", None)
            now[0] = at if deadline is None else max(at, deadline)
            store.cause = f"deadline at {at.isoformat()}"
            result.inputs.append({"at": at.isoformat(), "name": "DeadlinePassed"})
            runner.deadline_reached(result.saga_id, now[0])

        for event in feed:
            while ticks and (
                store.saga_version(result.saga_id) >= ticks[0][0] - 1
                or event.timestamp > ticks[0][1]
            ):
                fire_tick()
            now[0] = event.timestamp
            store.cause = f"{type(event).__name__} (v{event.originator_version})"
            result.inputs.append({"at": event.timestamp.isoformat(), "name": type(event).__name__})
            runner.route(event)
        while ticks:
            fire_tick()
        result.replayed = store.decisions
        saga = store.sagas.get(result.saga_id)
        result.replayed_state = None if saga is None else saga.state.value
