"""Saga replay: what the saga code at hand would have decided on the recorded history.

Each saga is rebuilt from its recorded inputs (its reservation's events, the failures of
the reserve commands it issued, and the deadlines the runner fired for it) by the saga
runner itself, over a store that captures what the runner would save instead of saving
it: a dry run that changes nothing and issues nothing. The replayed decisions (each
one's name and the commands it issues, with their keys and payloads) and the final
state are compared with the recorded ones.

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

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from application.command import Command
from application.pipeline import CommandPipeline
from application.saga_runner import ROUTED, SagaRunner, event_class, issued_command_id
from domain.reservation import Reservation
from domain.reservation_saga import RESERVE_SEATS, ReservationSaga

EXPIRING = event_class(ReservationSaga, "SagaExpiring")
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


@dataclass(frozen=True)
class Decision:
    """One decision of a saga: its event's name and the commands it issues, each as
    ``(type, key, payload as canonical JSON)``; ``cause`` says what it answered."""

    name: str
    commands: tuple[tuple[str, str, str], ...]
    cause: str | None = field(default=None, compare=False)

    @classmethod
    def of(cls, event: Any, cause: str | None = None) -> Decision:
        """The decision ``event`` records."""
        issued = tuple(
            (c["type"], c["key"], json.dumps(c["payload"], sort_keys=True, default=str))
            for c in getattr(event, "commands", [])
        )
        return cls(type(event).__name__, issued, cause)

    def as_dict(self) -> dict[str, Any]:
        """The decision as JSON-ready data."""
        found: dict[str, Any] = {
            "name": self.name,
            "commands": [
                {"type": t, "key": k, "payload": json.loads(p)} for t, k, p in self.commands
            ],
        }
        if self.cause is not None:
            found["cause"] = self.cause
        return found

    def __str__(self) -> str:
        issued = ", ".join(f"{t}({k})" for t, k, _ in self.commands)
        return f"{self.name}" + (f" → {issued}" if issued else "")


class Verdict(StrEnum):
    """How a saga's replay compares with its record."""

    IDENTICAL = "identical"
    DIVERGED = "diverged"
    ERROR = "error"


@dataclass
class ReplayedSaga:
    """One saga's recorded and replayed decisions and final states."""

    saga_id: UUID
    reservation_id: str
    recorded: list[Decision]
    recorded_state: str
    replayed: list[Decision] = field(default_factory=list)
    replayed_state: str | None = None
    error: str | None = None
    # The inputs fed, in order: {"at", "name"} (an event's class, or DeadlinePassed).
    inputs: list[dict[str, str]] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        """Identical, diverged, or the replay failed."""
        if self.error is not None:
            return Verdict.ERROR
        if self.recorded == self.replayed and self.recorded_state == self.replayed_state:
            return Verdict.IDENTICAL
        return Verdict.DIVERGED

    def divergence(self) -> dict[str, Any] | None:
        """Where the replay first departs from the record: the step (0 is the start),
        the recorded and the replayed decision there (None where one has no such step)."""
        if self.verdict is not Verdict.DIVERGED:
            return None
        step = next(
            (
                i
                for i, (old, new) in enumerate(zip(self.recorded, self.replayed, strict=False))
                if old != new
            ),
            min(len(self.recorded), len(self.replayed)),
        )
        recorded = self.recorded[step] if step < len(self.recorded) else None
        replayed = self.replayed[step] if step < len(self.replayed) else None
        return {
            "step": step,
            "recorded": recorded.as_dict() if recorded else None,
            "replayed": replayed.as_dict() if replayed else None,
        }

    def as_dict(self) -> dict[str, Any]:
        """The replay of this saga as JSON-ready data."""
        return {
            "saga_id": str(self.saga_id),
            "reservation_id": self.reservation_id,
            "verdict": self.verdict.value,
            "recorded_state": self.recorded_state,
            "replayed_state": self.replayed_state,
            "divergence": self.divergence(),
            "recorded": [d.as_dict() for d in self.recorded],
            "replayed": [d.as_dict() for d in self.replayed],
            "error": self.error,
        }


@dataclass
class ReplaySummary:
    """Counts of a replay, by verdict."""

    replayed: int = 0
    identical: int = 0
    diverged: int = 0
    errors: int = 0

    def add(self, saga: ReplayedSaga) -> None:
        """Count ``saga``."""
        self.replayed += 1
        verdict = saga.verdict
        if verdict is Verdict.IDENTICAL:
            self.identical += 1
        elif verdict is Verdict.DIVERGED:
            self.diverged += 1
        else:
            self.errors += 1


class CapturingStore:
    """The saga runner's store in a replay: aggregates as of any version from the
    histories read, sagas as the replay leaves them, saves captured and not made."""

    dry_run = True

    def __init__(self, histories: Mapping[UUID, list[Any]]) -> None:
        self.histories = histories
        self.sagas: dict[UUID, ReservationSaga] = {}
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
            if isinstance(aggregate, ReservationSaga):
                for event in aggregate.collect_events():
                    self.decisions.append(Decision.of(event, self.cause))
                self.sagas[aggregate.id] = aggregate
            # The commands a decision issues are in the decision: nothing is sent.

    def saga_version(self, saga_id: UUID) -> int:
        """The replayed saga's version, 0 before it starts."""
        saga = self.sagas.get(saga_id)
        return 0 if saga is None else saga.version


class SagaReplayer:
    """Replays sagas with ``saga_class`` (the deployed one, or a candidate fix) and
    reports per saga how its decisions compare with the recorded ones."""

    def __init__(
        self,
        history: EventHistory,
        pipeline: CommandPipeline,
        payment_deadline: timedelta,
        saga_class: type[ReservationSaga] = ReservationSaga,
    ) -> None:
        self.history = history
        self.pipeline = pipeline
        self.payment_deadline = payment_deadline
        self.saga_class = saga_class

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

    def replay(self, saga_ids: Sequence[UUID]) -> list[ReplayedSaga]:
        """Replay a batch of sagas (four reads of the store in all)."""
        recorded = self.history.events_of(saga_ids)
        found = [(saga_id, recorded[saga_id]) for saga_id in saga_ids if saga_id in recorded]
        reserves = {
            saga_id: [
                issued_command_id(saga_id, c["key"])
                for event in events
                for c in getattr(event, "commands", [])
                if c["type"] == RESERVE_SEATS
            ]
            for saga_id, events in found
        }
        # Only failed reserves are inputs: read whole only the commands that failed.
        failed = self.history.events_of(
            [command_id for ids in reserves.values() for command_id in ids], (FAILED_TOPIC,)
        )
        inputs = self.history.events_of(
            [Reservation.create_id(events[0].reservation_id) for _, events in found] + list(failed)
        )
        return [
            self._replay_one(saga_id, events, reserves[saga_id], inputs)
            for saga_id, events in found
        ]

    def _replay_one(
        self,
        saga_id: UUID,
        recorded_events: list[Any],
        reserve_ids: list[UUID],
        inputs: Mapping[UUID, list[Any]],
    ) -> ReplayedSaga:
        reservation_id: str = recorded_events[0].reservation_id
        recorded_saga: Any = None
        for event in recorded_events:
            recorded_saga = event.mutate(recorded_saga)
        result = ReplayedSaga(
            saga_id=saga_id,
            reservation_id=reservation_id,
            recorded=[Decision.of(event) for event in recorded_events],
            recorded_state=recorded_saga.state.value,
        )
        try:
            self._run(result, recorded_events, reserve_ids, inputs)
        except Exception as error:  # noqa: BLE001 - reported per saga; the others go on
            result.error = f"{type(error).__name__}: {error}"
        return result

    def _run(
        self,
        result: ReplayedSaga,
        recorded_events: list[Any],
        reserve_ids: list[UUID],
        inputs: Mapping[UUID, list[Any]],
    ) -> None:
        store = CapturingStore(inputs)
        now: list[datetime] = [recorded_events[0].timestamp]
        runner = SagaRunner(
            None,
            store,
            self.pipeline,
            self.payment_deadline,
            clock=lambda: now[0],
            saga_class=self.saga_class,
        )
        reservation_events = inputs.get(Reservation.create_id(result.reservation_id), [])
        failures = [
            event
            for command_id in reserve_ids
            for event in inputs.get(command_id, [])
            if isinstance(event, Command.CommandFailed)
        ]
        # sorted() is stable: a reservation's events of one instant keep version order.
        routed: list[Any] = [e for e in reservation_events if isinstance(e, ROUTED)]
        feed = sorted(
            routed + failures,
            key=lambda e: e.timestamp,
        )
        # (the recorded saga's version, when it was recorded, the runner's time then)
        ticks = [
            (e.originator_version, e.timestamp, getattr(e, "at", None) or e.timestamp)
            for e in recorded_events
            if isinstance(e, EXPIRING)
        ]

        def fire_tick() -> None:
            _, _, at = ticks.pop(0)
            # Where the runner found the deadline passed, it has passed: its length is
            # the runner's setting (maybe changed since), not a rule of the saga's.
            deadline = getattr(store.sagas.get(result.saga_id), "deadline_at", None)
            now[0] = at if deadline is None else max(at, deadline)
            store.cause = f"deadline at {at.isoformat()}"
            result.inputs.append({"at": at.isoformat(), "name": "DeadlinePassed"})
            runner.deadline_reached(result.reservation_id, now[0])

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
