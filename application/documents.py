"""The command document: what the registry stores and ``GET /commands/{id}`` shows."""

from __future__ import annotations

from typing import Any

from application.command import Command


def command_links(command: Command) -> dict[str, str]:
    """The links of a command document."""
    return {
        "self": f"/commands/{command.id}",
        "resource": command.resource,
        "events": f"/commands/{command.id}/events",
    }


def present_command(command: Command) -> dict[str, Any]:
    """The status document of ``GET /commands/{id}`` (DESIGN.md §3)."""
    return {
        "command_id": str(command.id),
        "type": command.command_type,
        "aggregate_id": str(command.aggregate_id),
        "status": command.status,
        "attempts": command.attempts,
        "submitted_at": command.created_on.isoformat(),
        "updated_at": command.modified_on.isoformat(),
        "correlation_id": str(command.correlation_id),
        "causation_id": command.causation_id,
        "error": _public_error(command.error),
        "retry_at": command.retry_at.isoformat() if command.retry_at else None,
        "links": command_links(command),
        "history": command.history,
    }


def _public_error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    # Tracebacks are for operators (the CLI), not for API clients.
    if error is None:
        return None
    return {k: v for k, v in error.items() if k != "traceback"}
