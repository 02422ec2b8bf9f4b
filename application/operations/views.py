"""The operator's use cases on views: how far each is, and a rebuild beside the live one."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import Notification

from application.operations import RefusedError
from application.operations.ports import Operator, ViewBehindError

# A view's lag is counted up to this many events (then ``lag_capped``): enough to tell
# a view keeping up from one that is not, cheap enough to ask every few seconds.
LAG_CAP = 10_000
RATE_LIMIT = 1_000_000
# How long a rebuild waits for the live view to reach the rebuilt one's position.
LIVE_WAIT_SECONDS = 30.0


def projections_status(
    operator: Operator, sample_seconds: float | None = None
) -> list[dict[str, Any]]:
    """Each view's position, the log's head, the view's lag (events of its topics it has
    yet to apply, up to :data:`LAG_CAP`), the event it is stalled on if any, and given
    ``sample_seconds`` how many events it applied per second over that time."""
    read = operator.read
    before = {name: read.position(name) for name in read.names}
    if sample_seconds is not None:
        time.sleep(sample_seconds)
    head = operator.app.recorder.max_notification_id() or 0
    stalled = operator.stalled()
    leases = {lease["name"]: lease for lease in operator.leases()}
    frontiers = read.frontiers(read.names)
    now = datetime.now(UTC)
    found = []
    for name in read.names:
        position = read.position(name)
        lag = read.pending(name, head, LAG_CAP)
        item: dict[str, Any] = {
            "name": name,
            "position": position,
            "head": head,
            "lag": lag,
            "lag_capped": lag >= LAG_CAP,
            "lag_seconds": _age(operator, frontiers.get(name), now),
            "stalled": stalled.get(name) or _first_stall(stalled, name),
            "lease": leases.get(f"projection:{name}"),
            "segments": [
                {
                    "segment": label,
                    "position": at or 0,
                    "lease": leases.get(f"projection:{name}{label}"),
                }
                for label, at in read.segment_positions(name).items()
            ],
        }
        if sample_seconds is not None:
            applied = read.count_between(name, before[name], position, RATE_LIMIT)
            item["events_per_s"] = round(applied / sample_seconds, 1)
        found.append(item)
    return found


def followers_status(operator: Operator) -> list[dict[str, Any]]:
    """The followers that are not views (the relay, the saga runner): each one's
    position, lag (events of its topics it has yet to take, up to :data:`LAG_CAP`) and
    the age in seconds of the oldest of them."""
    now = datetime.now(UTC)
    found = []
    for name, (position, topics) in sorted(operator.followers().items()):
        lag, oldest = operator.history.pending(position, topics, LAG_CAP)
        found.append(
            {
                "name": name,
                "position": position,
                "lag": lag,
                "lag_seconds": _age_of(operator, oldest, now) if oldest is not None else 0.0,
            }
        )
    return found


def _age(operator: Operator, position: int | None, now: datetime) -> float:
    """Seconds since the event at ``position`` happened (0 for none): how long the
    oldest event a follower has yet to take has waited."""
    if position is None:
        return 0.0
    found = operator.app.recorder.select_notifications(start=position, limit=1)
    return _age_of(operator, found[0], now) if found else 0.0


def _age_of(operator: Operator, notification: Notification, now: datetime) -> float:
    """Seconds since the event of ``notification`` happened."""
    event = operator.app.mapper.to_domain_event(notification)
    happened: datetime = getattr(event, "timestamp", now)
    return round(max((now - happened).total_seconds(), 0.0), 3)


def _first_stall(stalled: dict[str, Any], name: str) -> Any:
    """The stall of one of view ``name``'s segments, if one is stalled."""
    return next((stall for n, stall in sorted(stalled.items()) if n.startswith(name + "#")), None)


def rebuild(
    operator: Operator,
    projection: type[Any],
    swap: bool,
    started: Callable[[int], None] = lambda total: None,
    progress: Callable[[int], None] = lambda done: None,
    diff_rows: int = 10,
) -> dict[str, Any]:
    """Rebuild ``projection``'s view into its shadow while the live one serves, catch it
    up to the head, diff it against the live view, and swap only when ``swap``.
    ``started`` hears how many events the build applies, ``progress`` each batch."""
    rebuilding = operator.rebuilding(projection)
    head = rebuilding.head()
    rebuilding.start()
    started(rebuilding.count(0, head))
    began = time.perf_counter()
    events = rebuilding.catch_up(head, progress)
    seconds = time.perf_counter() - began
    events += rebuilding.catch_up(None, progress)  # what came while it built
    # The live view's projector reaches the same position, unless it is not running.
    rebuilding.await_live(rebuilding.position(), LIVE_WAIT_SECONDS)
    difference = rebuilding.diff(diff_rows)
    swapped_at = None
    if swap:
        try:
            swapped_at = rebuilding.swap()
        except ViewBehindError as error:
            raise RefusedError(f"not swapped: {error}") from None
    return {
        "name": projection.name,
        "events": events,
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds, 1) if seconds else 0.0,
        "diff": difference.as_dict(),
        "swapped": swap,
        "swapped_at": swapped_at,
    }
