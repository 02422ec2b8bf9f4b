"""The operator's use cases on commands: a command's full record, dead letters, re-drive."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from application.command import Command
from application.operations import NotFoundError
from application.operations.ports import Operator

SUCCEEDED_TOPIC = get_topic(Command.CommandSucceeded)


def command_detail(operator: Operator, command_id: UUID) -> dict[str, Any]:
    """A command's record for an operator: the registry's document with the errors'
    tracebacks, and the events its successful attempt saved."""
    command = operator.pipeline.get_command(command_id)
    if command is None:
        raise NotFoundError(f"no command {command_id}")
    record = operator.present_command(command)
    record["error"] = command.error
    record["attempts"] = command.attempts  # with their tracebacks
    record["submitted_by"] = command.submitted_by
    record["payload"] = command.payload
    record["caused"] = caused_events(operator, command)
    record["timeline"] = command_timeline(operator, command)
    return record


def caused_events(operator: Operator, command: Command) -> list[dict[str, Any]]:
    """The domain events saved with the command's ``CommandSucceeded`` (one transaction)."""
    return [
        {
            "aggregate_id": str(n.originator_id),
            "version": n.originator_version,
            "event": n.topic.rsplit(".", 1)[-1],
            "position": n.id,
        }
        for n in operator.history.saved_with(command.id, SUCCEEDED_TOPIC)
    ]


OUTCOME_TOPICS = {
    "succeeded": SUCCEEDED_TOPIC,
    "failed": get_topic(Command.CommandFailed),
    "dead_lettered": get_topic(Command.CommandDeadLettered),
}


def command_timeline(operator: Operator, command: Command) -> list[dict[str, Any]]:
    """The hops of ``command`` with their times, from what the log and the views record:
    accepted; for each attempt, its message published (by the relay), received by a
    worker, started, and its outcome saved; then, once it is decided, its outcome
    visible in each view that applied it (the registry, and on PostgreSQL the views of
    the aggregates its success changed). Each hop has ``ms``, its time since the accept."""
    accepted = command.created_on
    hops: list[dict[str, Any]] = [
        {
            "hop": "accepted",
            "at": accepted.isoformat(),
            "component": "saga_runner" if command.submitted_by == "saga" else "web",
        }
    ]
    for run in command.attempts:
        number, worker = run["attempt"], run.get("worker")
        for hop, key, component in (
            ("published", "published_at", "relay"),
            ("received", "received_at", worker),
            ("started", "started_at", worker),
            ("outcome", "ended_at", worker),
        ):
            if run.get(key):
                step = {"hop": hop, "at": run[key], "component": component, "attempt": number}
                if hop == "outcome":
                    step["outcome"] = run.get("outcome")
                hops.append(step)
    hops.extend(_visible(operator, command))
    for step in hops:
        at = datetime.fromisoformat(step["at"])
        step["ms"] = round((at - accepted).total_seconds() * 1000, 1)
    return hops


def _visible(operator: Operator, command: Command) -> list[dict[str, Any]]:
    """When the decided ``command``'s outcome reached each view: a view's row of an
    aggregate the outcome's transaction wrote, written for an event of that
    transaction (a row written again since says nothing of the first time)."""
    topic = OUTCOME_TOPICS.get(command.status)
    if topic is None:
        return []
    found: dict[str, datetime] = {}
    registry = operator.read.get(operator.commands_view, command.id)
    if registry is not None and registry["status"] == command.status:
        written = operator.read.written(operator.commands_view, [command.id])
        if command.id in written:
            found[operator.commands_view] = written[command.id][1]
    together = operator.history.saved_with(command.id, topic)
    positions = {n.id for n in together}
    keys = list({UUID(str(n.originator_id)) for n in together})
    for view in operator.read.names if keys else []:
        for position, at in operator.read.written(view, keys).values():
            if position in positions:
                found[view] = min(at, found.get(view, at))
    return [
        {"hop": "visible", "at": at.isoformat(), "component": "projector", "view": view}
        for view, at in sorted(found.items(), key=lambda item: item[1])
    ]


def dead_letters(operator: Operator, error_type: str | None = None) -> dict[str, Any]:
    """The dead-lettered commands (whose last error is of ``error_type``, if given), and
    the counts of all of them per error type."""
    items = list(operator.walk(operator.commands_view, {"status": "dead_lettered"}))
    counts: dict[str, int] = {}
    for item in items:
        kind = _error_type(item)
        counts[kind] = counts.get(kind, 0) + 1
    if error_type is not None:
        items = [item for item in items if _error_type(item) == error_type]
    return {"items": items, "counts": dict(sorted(counts.items()))}


def _error_type(item: dict[str, Any]) -> str:
    return str((item.get("error") or {}).get("type", "unknown"))


def redrive(
    operator: Operator,
    command_ids: list[UUID],
    error_type: str | None,
    every: bool,
    by: str,
    reason: str,
) -> list[dict[str, Any]]:
    """Re-drive dead-lettered commands: the ids given, those whose last error is of
    ``error_type``, or ``every`` one. Each keeps its id and gets ``CommandRedriven``;
    a command not dead-lettered (a domain failure, one re-driven already) is skipped
    with the reason, so re-driving twice re-drives once."""
    if every or error_type is not None:
        listed = dead_letters(operator, None if every else error_type)["items"]
        command_ids = [UUID(item["command_id"]) for item in listed]
    results = []
    for command_id in command_ids:
        command = operator.pipeline.get_command(command_id)
        if command is None:
            results.append({"command_id": str(command_id), "result": "not found"})
        elif command.status != "dead_lettered":
            results.append(
                {
                    "command_id": str(command_id),
                    "result": "skipped",
                    "detail": f"not dead-lettered (status {command.status})",
                }
            )
        else:
            done = operator.pipeline.redrive(command_id, by=by, reason=reason)
            results.append(
                {
                    "command_id": str(command_id),
                    "result": "redriven",
                    "detail": f"next attempt {done.attempt + 1}",
                }
            )
    return results
