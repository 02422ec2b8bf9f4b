"""What the operator's console shows, read from the views and the log: one snapshot,
rendered into the page and sent again by its event stream every few seconds."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from application.operations import commands as command_ops
from application.operations import views as view_ops
from application.operations.ports import Operator
from application.queries import OneOf
from interfaces import arguments
from projections.sagas import RUNNING

# The charts' window and resolution: the last five minutes, ten seconds a point.
WINDOW = timedelta(minutes=5)
BUCKET = timedelta(seconds=10)
# Decided commands read for the charts: the latest this many (a busier service shows
# the part of the window they cover).
CHARTED = 2_000
# Rows of each list.
LISTED = 20
DECIDED = ("succeeded", "failed", "dead_lettered")


def snapshot(operator: Operator, now: datetime | None = None) -> dict[str, Any]:
    """The console's figures as of ``now``: commands by status, throughput and latency
    over the last minutes, each view's and follower's lag, the dead letters, the sagas
    stuck behind one, and the latest sagas."""
    now = now or datetime.now(UTC)
    read = operator.read
    dead = read.recent(operator.commands_view, {"status": "dead_lettered"}, LISTED)
    return {
        "at": now.isoformat(),
        "commands": read.counts(operator.commands_view, "status"),
        "series": series(
            read.recent(operator.commands_view, {"status": OneOf(DECIDED)}, CHARTED), now
        ),
        "views": [
            {k: item[k] for k in ("name", "position", "lag", "lag_seconds")}
            for item in view_ops.projections_status(operator)
        ]
        + view_ops.followers_status(operator),
        "dead_letters": [_dead_letter(command) for command in dead],
        "stuck_sagas": _stuck(operator, dead),
        "recent_sagas": [_saga(saga) for saga in read.recent(operator.sagas_view, {}, LISTED // 2)],
    }


def series(decided: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Per :data:`BUCKET` of the last :data:`WINDOW` (up to the last whole bucket),
    oldest first: how many commands were decided a second, and the p50 and p99 of
    their accept-to-outcome times (ms)."""
    count = int(WINDOW / BUCKET)
    # Whole buckets only: the one under way would show a drop that is not there.
    seconds = BUCKET.total_seconds()
    end = datetime.fromtimestamp(math.floor(now.timestamp() / seconds) * seconds, UTC)
    start = end - WINDOW
    latencies: list[list[float]] = [[] for _ in range(count)]
    for command in decided:
        ended = datetime.fromisoformat(command["updated_at"])
        index = math.floor((ended - start) / BUCKET)
        if 0 <= index < count:
            accepted = datetime.fromisoformat(command["submitted_at"])
            latencies[index].append((ended - accepted).total_seconds() * 1000)
    points = []
    for index, values in enumerate(latencies):
        values.sort()
        points.append(
            {
                "t": (start + BUCKET * index).isoformat(),
                "per_s": round(len(values) / BUCKET.total_seconds(), 2),
                "p50_ms": _percentile(values, 0.5),
                "p99_ms": _percentile(values, 0.99),
            }
        )
    return points


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, math.ceil(q * len(values)) - 1)], 1)


def _dead_letter(command: dict[str, Any]) -> dict[str, Any]:
    error = command.get("error") or {}
    return {
        "command_id": command["command_id"],
        "type": command["type"],
        "status": command["status"],
        "attempts": len(command["attempts"]),
        "error": f"{error.get('type', '')}: {error.get('message', '')}".strip(": "),
        "updated_at": command["updated_at"],
    }


def _saga(saga: dict[str, Any]) -> dict[str, Any]:
    return {
        "saga_id": saga["saga_id"],
        "state": saga["state"],
        "reservation_id": saga.get("reservation_id"),
        "deadline_at": saga.get("deadline_at"),
    }


def _stuck(operator: Operator, dead: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The running sagas among the correlations of ``dead`` (the latest dead letters)."""
    found = []
    for saga_id in dict.fromkeys(command["correlation_id"] for command in dead):
        saga = operator.read.get(operator.sagas_view, UUID(saga_id))
        if saga is not None and saga["state"] in RUNNING:
            found.append(_saga(saga))
    return found


def search(operator: Operator, text: str) -> list[dict[str, Any]]:
    """The commands a search names: the command with that id, and those of that
    correlation id (a saga's), or of that resource (``/shows/s1``, or ``s1`` under any
    resource of the commands, as ``commands list --resource`` reads it)."""
    text = text.strip()
    filters: list[dict[str, Any]] = []
    try:
        key = UUID(text)
    except ValueError:
        paths = arguments.resource_paths(operator.pipeline.catalog, text)
        if paths is not None:
            filters.append({"resource": OneOf(paths)})
    else:
        filters.append({"correlation_id": key})
        found = operator.read.get(operator.commands_view, key)
        if found is not None:
            return [found, *_listed(operator, filters, exclude=text)]
    return _listed(operator, filters)


def _listed(
    operator: Operator, filters: list[dict[str, Any]], exclude: str | None = None
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for each in filters:
        documents, _ = operator.read.page(operator.commands_view, each, None, LISTED * 2)
        found += [d for d in documents if d["command_id"] != exclude]
    return found


def waterfall(operator: Operator, command_id: UUID) -> list[dict[str, Any]] | None:
    """The command's hops for a waterfall: each with its start and end (ms since the
    accept), from the hop before it; None for no such command."""
    command = operator.pipeline.get_command(command_id)
    if command is None:
        return None
    hops = command_ops.command_timeline(operator, command)
    bars = []
    previous = 0.0
    for hop in hops:
        end = float(hop["ms"])
        start = previous if hop["hop"] != "visible" else _outcome_ms(hops)
        bars.append({**hop, "from_ms": min(start, end), "to_ms": end})
        if hop["hop"] != "visible":
            previous = end
    return bars


def _outcome_ms(hops: list[dict[str, Any]]) -> float:
    """A view applies the outcome: its bar starts at the last outcome."""
    outcomes = [float(h["ms"]) for h in hops if h["hop"] == "outcome"]
    return outcomes[-1] if outcomes else 0.0
