"""The operator's use cases on sagas: list, timeline, dry-run replay, retry a stuck step."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from application.command import Command
from application.operations import NotFoundError, RefusedError
from application.operations.ports import Operator
from application.queries import OneOf
from application.saga_replay import SagaReplayer
from application.saga_replay_report import ReplayedSaga, ReplaySummary
from application.saga_runner import issued_command_id, saga_command
from application.saga_slice import SagaSlice
from application.unit_of_work import find_aggregate
from domain.saga import Saga


def list_sagas(
    operator: Operator, filters: dict[str, Any], step_status: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """The sagas matching ``filters``; with ``step_status``, only those with a command
    (one they issued, or their reservation's) in one of those statuses."""
    sagas = operator.walk(operator.sagas_view, filters)
    if not step_status:
        return list(sagas)
    steps = {"status": OneOf(step_status)}
    marked = {item["correlation_id"] for item in operator.walk(operator.commands_view, steps)}
    return [saga for saga in sagas if saga["saga_id"] in marked]


def saga_detail(operator: Operator, saga_id: UUID) -> dict[str, Any]:
    """A saga's state and timeline: the events it received, each decision (with the
    event it answered, when a replay of the saga matches its record), the commands it
    issued and their outcomes, the deadlines set and found passed."""
    found = operator.saga_document(saga_id)
    if found is None:
        raise NotFoundError(f"no saga {saga_id}")
    replayed = replayer(operator).replay([saga_id])
    if replayed:
        (saga,) = replayed
        decisions = [entry for entry in found["timeline"] if entry["kind"] == "decision"]
        if saga.verdict.value == "identical" and len(decisions) == len(saga.replayed):
            for entry, decision in zip(decisions, saga.replayed, strict=True):
                entry["cause"] = decision.cause
        received = [{"kind": "event", **entry} for entry in saga.inputs]
        found["timeline"] = sorted(found["timeline"] + received, key=lambda e: str(e["at"]))
    return found


def replayer(operator: Operator, slices: Sequence[SagaSlice[Any]] | None = None) -> SagaReplayer:
    """A replayer of ``slices`` (the deployed ones when None)."""
    chosen = operator.slices if slices is None else slices
    return SagaReplayer(operator.history, operator.pipeline, chosen)


@dataclass
class Replay:
    """A replay's results, summary and speed."""

    sagas: list[ReplayedSaga]
    summary: ReplaySummary
    seconds: float

    def as_dict(self, every: bool = False) -> dict[str, Any]:
        """The summary and the sagas that did not replay identically (all with ``every``)."""
        shown = [s for s in self.sagas if every or s.verdict.value != "identical"]
        return {
            "summary": {**vars(self.summary), "seconds": round(self.seconds, 3)},
            "sagas": [s.as_dict() for s in shown],
        }


def replay(
    operator: Operator,
    saga_ids: list[UUID],
    slices: Sequence[SagaSlice[Any]] | None = None,
    progress: Callable[[int], None] = lambda done: None,
) -> Replay:
    """Replay ``saga_ids`` in a dry run with ``slices`` (the deployed ones when None, or
    a candidate fix's); see :mod:`application.saga_replay`."""
    chosen = replayer(operator, slices)
    started = time.perf_counter()
    summary = ReplaySummary()
    results = []
    for saga in chosen.replay_all(saga_ids, progress):
        summary.add(saga)
        results.append(saga)
    return Replay(results, summary, time.perf_counter() - started)


def retry_saga(operator: Operator, saga_id: UUID, by: str) -> dict[str, Any]:
    """Re-issue the stuck step of a saga: a copy of its last command whose own command
    failed or was dead-lettered, under an id derived from that command and the number
    of retries, caused by it and correlated with the saga. Retrying again while the
    copy is pending issues nothing."""
    found = find_aggregate(operator.app, saga_id)
    if not isinstance(found, Saga):
        raise NotFoundError(f"no saga {saga_id}")
    if found.is_finished:
        raise RefusedError(f"saga {saga_id} is {found.state.value}: nothing to retry")
    if not found.issued:
        raise RefusedError(f"saga {saga_id} is {found.state.value}: it waits for no command")
    issued = []
    for step in found.issued:
        key = step["key"]
        # Walk the step's command and its retries to the first not failed for good.
        stuck: Command | None = None
        retry = 0
        latest = operator.pipeline.get_command(issued_command_id(saga_id, key))
        while latest is not None and latest.status in ("failed", "dead_lettered"):
            stuck, retry = latest, retry + 1
            latest = operator.pipeline.get_command(
                issued_command_id(saga_id, f"{key}.retry-{retry}")
            )
        if stuck is None:
            raise RefusedError(
                f"saga {saga_id}: its step {step['type']} ({key}) is "
                f"{'not issued' if latest is None else latest.status}, not stuck"
            )
        if latest is not None:
            issued.append(
                {"command_id": str(latest.id), "result": "pending", "status": latest.status}
            )
            continue
        command = _reissue(operator, found, step, f"{key}.retry-{retry}", stuck.id, by)
        issued.append({"command_id": str(command.id), "result": "issued", "status": command.status})
    return {"saga_id": str(saga_id), "steps": issued}


def _reissue(
    operator: Operator, saga: Saga, step: dict[str, Any], key: str, cause: UUID, by: str
) -> Command:
    command = saga_command(
        operator.pipeline,
        saga,
        step["type"],
        key,
        step["payload"],
        f"{cause} (retried by {by})",
    )
    # A concurrent retry issuing it first made the same command (by its id).
    with contextlib.suppress(IntegrityError):
        operator.app.save(command)
    return command
