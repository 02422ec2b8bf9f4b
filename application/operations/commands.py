"""The operator's use cases on commands: a command's full record, dead letters, re-drive."""

from __future__ import annotations

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
