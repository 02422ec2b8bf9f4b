"""The operator's operations, shared by the CLI and the ``/admin`` HTTP endpoints.

Each takes the built :class:`~interfaces.bootstrap.Container` and plain values, checks
them (a :class:`BadArgumentsError` lists every bad one, as the HTTP API's 400 does), and
returns JSON-ready data, so that ``--json`` and HTTP print the same documents.
"""

from __future__ import annotations

import contextlib
import re
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, get_args
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic, resolve_topic
from pydantic import TypeAdapter, ValidationError

from application.command import Command, Status
from application.payloads import Timestamp
from application.registry import CommandRegistry
from application.saga_replay import SagaReplayer
from application.saga_replay_report import ReplayedSaga, ReplaySummary
from application.saga_runner import issued_command_id, saga_command
from application.unit_of_work import find_aggregate
from domain.saga import Saga
from infrastructure.history import RecordedHistory
from infrastructure.rebuild import LiveViewBehindError, ProjectionRebuild
from interfaces.bootstrap import Container
from projections.catalog import PROJECTIONS_BY_NAME
from projections.command_registry import CommandRegistryProjection, present_command
from projections.document_projection import DocumentProjection
from projections.document_view import Between, OneOf
from projections.sagas import RUNNING, STATES, SagasProjection, get_saga

STATUSES: tuple[str, ...] = get_args(Status)
COMMAND_TYPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
RESOURCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DURATION = re.compile(r"^([0-9]{1,9})(s|m|h|d)$")
# A resource as a path (no control characters, 300 at most) or as a client's id; the
# same pattern in the OpenAPI document.
RESOURCE = re.compile(r"^(/[^\x00-\x1f\x7f]{0,299}|[A-Za-z0-9][A-Za-z0-9._-]{0,63})$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(Timestamp)
SUCCEEDED_TOPIC = get_topic(Command.CommandSucceeded)
# Rows read per page when an operation walks a whole view.
WALK_PAGE = 1_000
# A view's lag and rate are counted up to these many events.
LAG_LIMIT = 1_000_000
RATE_LIMIT = 1_000_000
# How long a rebuild waits for the live view to reach the rebuilt one's position.
LIVE_WAIT_SECONDS = 30.0


@dataclass
class BadArgumentsError(Exception):
    """Raised with every bad argument of an operation: ``[{location, message}]``."""

    errors: list[dict[str, str]] = field(default_factory=list)

    def add(self, location: str, message: str) -> None:
        """Note one bad argument."""
        self.errors.append({"location": location, "message": message})

    def raise_any(self) -> None:
        """Raise this if any argument was bad."""
        if self.errors:
            raise self

    def __str__(self) -> str:
        return "; ".join(f"{e['location']}: {e['message']}" for e in self.errors)


class NotFoundError(LookupError):
    """Raised when the command or saga asked for does not exist."""


class RefusedError(ValueError):
    """Raised when an operation does not apply to what it was asked of."""


def parse_time(value: str | None, location: str, violations: BadArgumentsError) -> datetime | None:
    """An RFC 3339 time with an offset, or None; a bad one is noted."""
    if value is None:
        return None
    try:
        parsed: datetime = TIMESTAMP.validate_python(value)
    except ValidationError:
        violations.add(location, "an RFC 3339 time with an offset, e.g. 2027-01-01T20:00:00Z")
        return None
    return parsed


def parse_limit(
    raw: str | None, default: int, maximum: int, location: str, violations: BadArgumentsError
) -> int:
    """A page size from 1 to ``maximum`` (``default`` when not given); a bad one is noted."""
    if raw is None:
        return default
    if not re.fullmatch(f"[0-9]{{1,{len(str(maximum))}}}", raw) or not 1 <= int(raw) <= maximum:
        violations.add(location, f"a whole number from 1 to {maximum}")
        return default
    return int(raw)


def time_range(
    since: str | None, until: str | None, location: str, violations: BadArgumentsError
) -> Between | None:
    """The filter of ``since`` and ``until`` (either may be missing), None for neither."""
    low = parse_time(since, f"{location}.since", violations)
    high = parse_time(until, f"{location}.until", violations)
    return Between(low, high) if low is not None or high is not None else None


def parse_duration(
    value: str | None, location: str, violations: BadArgumentsError
) -> timedelta | None:
    """``30s``, ``5m``, ``2h`` or ``1d``, or None; a bad one is noted."""
    if value is None:
        return None
    found = DURATION.fullmatch(value)
    if found is None:
        violations.add(location, "a duration such as 30s, 5m, 2h or 1d")
        return None
    return timedelta(seconds=int(found[1]) * UNITS[found[2]])


def parse_uuid(value: str | None, location: str, violations: BadArgumentsError) -> UUID | None:
    """A UUID, or None; a bad one is noted."""
    if value is None:
        return None
    try:
        return UUID(value)
    except ValueError:
        violations.add(location, "must be a UUID")
        return None


def resource_paths(registry: CommandRegistry, resource: str) -> tuple[str, ...] | None:
    """The resources ``resource`` may mean: itself when it is a path (``/shows/hamlet``),
    else that id under every resource template of the commands (``hamlet``)."""
    if not RESOURCE.fullmatch(resource):
        return None
    if resource.startswith("/"):
        return (resource,)
    paths = set()
    for spec in registry:
        fields = [name for _, name, _, _ in string.Formatter().parse(spec.resource) if name]
        if len(fields) == 1:
            paths.add(spec.resource.format_map({fields[0]: resource}))
    return tuple(sorted(paths))


def command_filters(
    registry: CommandRegistry,
    *,
    status: str | None = None,
    command_type: str | None = None,
    resource: str | None = None,
    correlation_id: str | None = None,
    aggregate_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    location: str = "query",
) -> dict[str, Any]:
    """The registry filters of these arguments; raises :class:`BadArgumentsError`."""
    violations = BadArgumentsError()
    filters: dict[str, Any] = {}
    if status is not None:
        if status in STATUSES:
            filters["status"] = status
        else:
            violations.add(f"{location}.status", f"one of {', '.join(STATUSES)}")
    if command_type is not None:
        if COMMAND_TYPE.fullmatch(command_type):
            filters["type"] = command_type
        else:
            violations.add(f"{location}.type", "not a command type name")
    if resource is not None:
        paths = resource_paths(registry, resource)
        if paths is None:
            violations.add(f"{location}.resource", "a resource path (/shows/s1) or id (s1)")
        else:
            filters["resource"] = OneOf(paths)
    for name, value in (("correlation_id", correlation_id), ("aggregate_id", aggregate_id)):
        parsed = parse_uuid(value, f"{location}.{name}", violations)
        if parsed is not None:
            filters[name] = parsed
    period = time_range(since, until, location, violations)
    if period is not None:
        filters["submitted_at"] = period
    violations.raise_any()
    return filters


def walk(container: Container, view: str, filters: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every document of ``view`` matching ``filters``, oldest first."""
    cursor: str | None = None
    while True:
        documents, cursor = container.read_models.page(view, filters, cursor, WALK_PAGE)
        yield from documents
        if cursor is None:
            return


# --- commands ---------------------------------------------------------------------


def command_detail(container: Container, command_id: UUID) -> dict[str, Any]:
    """A command's record for an operator: the registry's document with the errors'
    tracebacks, and the events its successful attempt saved."""
    command = container.pipeline.get_command(command_id)
    if command is None:
        raise NotFoundError(f"no command {command_id}")
    record = present_command(command)
    record["error"] = command.error
    record["attempts"] = command.attempts  # with their tracebacks
    record["submitted_by"] = command.submitted_by
    record["payload"] = command.payload
    record["caused"] = caused_events(container, command)
    return record


def caused_events(container: Container, command: Command) -> list[dict[str, Any]]:
    """The domain events saved with the command's ``CommandSucceeded`` (one transaction)."""
    return [
        {
            "aggregate_id": str(n.originator_id),
            "version": n.originator_version,
            "event": n.topic.rsplit(".", 1)[-1],
            "position": n.id,
        }
        for n in RecordedHistory(container.app).saved_with(command.id, SUCCEEDED_TOPIC)
    ]


# --- dead letters -----------------------------------------------------------------


def dead_letters(container: Container, error_type: str | None = None) -> dict[str, Any]:
    """The dead-lettered commands (whose last error is of ``error_type``, if given), and
    the counts of all of them per error type."""
    filters = command_filters(container.registry, status="dead_lettered")
    items = list(walk(container, CommandRegistryProjection.name, filters))
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
    container: Container,
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
        listed = dead_letters(container, None if every else error_type)["items"]
        command_ids = [UUID(item["command_id"]) for item in listed]
    results = []
    for command_id in command_ids:
        command = container.pipeline.get_command(command_id)
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
            done = container.pipeline.redrive(command_id, by=by, reason=reason)
            results.append(
                {
                    "command_id": str(command_id),
                    "result": "redriven",
                    "detail": f"next attempt {done.attempt + 1}",
                }
            )
    return results


# --- sagas ------------------------------------------------------------------------


def saga_filters(
    *,
    state: str | None = None,
    stuck_for: str | None = None,
    since: str | None = None,
    until: str | None = None,
    location: str = "query",
) -> dict[str, Any]:
    """The sagas view's filters of these arguments; raises :class:`BadArgumentsError`."""
    violations = BadArgumentsError()
    filters: dict[str, Any] = {}
    if state is not None:
        if state in STATES:
            filters["state"] = state
        else:
            violations.add(f"{location}.state", f"one of {', '.join(STATES)}")
    stuck = parse_duration(stuck_for, f"{location}.stuck_for", violations)
    if stuck is not None:
        # Only a running saga can be stuck: with a finished state asked for, none is.
        chosen = filters.get("state")
        filters["state"] = OneOf(
            RUNNING if chosen is None else (chosen,) if chosen in RUNNING else ()
        )
        # Longer than the service can have run: nothing older than its epoch.
        now = datetime.now(UTC)
        filters["updated_at"] = Between(None, max(now - min(stuck, now - EPOCH), EPOCH))
    period = time_range(since, until, location, violations)
    if period is not None:
        filters["started_at"] = period
    violations.raise_any()
    return filters


def list_sagas(
    container: Container, filters: dict[str, Any], step_status: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """The sagas matching ``filters``; with ``step_status``, only those with a command
    (one they issued, or their reservation's) in one of those statuses."""
    sagas = walk(container, SagasProjection.name, filters)
    if not step_status:
        return list(sagas)
    steps = {"status": OneOf(step_status)}
    marked = {
        item["correlation_id"] for item in walk(container, CommandRegistryProjection.name, steps)
    }
    return [saga for saga in sagas if saga["saga_id"] in marked]


def saga_detail(container: Container, saga_id: UUID) -> dict[str, Any]:
    """A saga's state and timeline: the events it received, each decision (with the
    event it answered, when a replay of the saga matches its record), the commands it
    issued and their outcomes, the deadlines set and found passed."""
    found = get_saga(container.read_models, saga_id)
    if found is None:
        raise NotFoundError(f"no saga {saga_id}")
    replayed = replayer(container).replay([saga_id])
    if replayed:
        (saga,) = replayed
        decisions = [entry for entry in found["timeline"] if entry["kind"] == "decision"]
        if saga.verdict.value == "identical" and len(decisions) == len(saga.replayed):
            for entry, decision in zip(decisions, saga.replayed, strict=True):
                entry["cause"] = decision.cause
        received = [{"kind": "event", **entry} for entry in saga.inputs]
        found["timeline"] = sorted(found["timeline"] + received, key=lambda e: str(e["at"]))
    return found


def saga_id_of(container: Container, value: str) -> UUID:
    """A saga's id from its id or the id it was started for (its reservation's), in
    the first saga slice registered."""
    try:
        return UUID(value)
    except ValueError:
        if not RESOURCE_ID.fullmatch(value) or not container.registry.sagas:
            raise BadArgumentsError(
                [{"location": "saga", "message": "a saga or reservation id"}]
            ) from None
        return container.registry.sagas[0].saga_id(value)


def replayer(container: Container, saga_class: str | None = None) -> SagaReplayer:
    """A replayer of the deployed saga slices, or with the slice of the saga class the
    topic names (``package.module:Class``, a candidate fix) running that class."""
    slices = container.registry.sagas
    if saga_class is not None:
        try:
            candidate = resolve_topic(saga_class)
        except Exception as error:  # noqa: BLE001 - any import failure is the operator's to see
            raise BadArgumentsError([{"location": "saga_class", "message": str(error)}]) from None
        kinds = [
            s for s in slices if isinstance(candidate, type) and issubclass(candidate, s.saga_class)
        ]
        if not kinds:
            names = " or ".join(s.saga_class.__name__ for s in slices)
            raise BadArgumentsError([{"location": "saga_class", "message": f"not a {names} class"}])
        slices = [kinds[0].running(candidate)]
    return SagaReplayer(RecordedHistory(container.app), container.pipeline, slices)


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
    container: Container,
    saga_ids: list[UUID],
    saga_class: str | None = None,
    progress: Callable[[int], None] = lambda done: None,
) -> Replay:
    """Replay ``saga_ids`` in a dry run; see :mod:`application.saga_replay`."""
    chosen = replayer(container, saga_class)
    started = time.perf_counter()
    summary = ReplaySummary()
    results = []
    for saga in chosen.replay_all(saga_ids, progress):
        summary.add(saga)
        results.append(saga)
    return Replay(results, summary, time.perf_counter() - started)


def retry_saga(container: Container, saga_id: UUID, by: str) -> dict[str, Any]:
    """Re-issue the stuck step of a saga: a copy of its last command whose own command
    failed or was dead-lettered, under an id derived from that command and the number
    of retries, caused by it and correlated with the saga. Retrying again while the
    copy is pending issues nothing."""
    found = find_aggregate(container.app, saga_id)
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
        latest = container.pipeline.get_command(issued_command_id(saga_id, key))
        while latest is not None and latest.status in ("failed", "dead_lettered"):
            stuck, retry = latest, retry + 1
            latest = container.pipeline.get_command(
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
        command = _reissue(container, found, step, f"{key}.retry-{retry}", stuck.id, by)
        issued.append({"command_id": str(command.id), "result": "issued", "status": command.status})
    return {"saga_id": str(saga_id), "steps": issued}


def _reissue(
    container: Container, saga: Saga, step: dict[str, Any], key: str, cause: UUID, by: str
) -> Command:
    command = saga_command(
        container.pipeline,
        saga,
        step["type"],
        key,
        step["payload"],
        f"{cause} (retried by {by})",
    )
    # A concurrent retry issuing it first made the same command (by its id).
    with contextlib.suppress(IntegrityError):
        container.app.save(command)
    return command


# --- projections ------------------------------------------------------------------


def projections_status(container: Container, sample_seconds: float = 1.0) -> list[dict[str, Any]]:
    """Each view's position, the log's head, the view's lag (events of its topics it has
    yet to apply) and how many it applied per second over ``sample_seconds``."""
    read = container.read_models
    before = {name: read.position(name) for name in read.names}
    time.sleep(sample_seconds)
    head = container.app.recorder.max_notification_id() or 0
    found = []
    for name in read.names:
        position = read.position(name)
        found.append(
            {
                "name": name,
                "position": position,
                "head": head,
                "lag": read.pending(name, head, LAG_LIMIT),
                "events_per_s": round(
                    read.count_between(name, before[name], position, RATE_LIMIT) / sample_seconds,
                    1,
                ),
            }
        )
    return found


def projection_class(name: str) -> type[DocumentProjection]:
    """The projection called ``name``; raises :class:`BadArgumentsError`."""
    found = PROJECTIONS_BY_NAME.get(name)
    if found is None:
        raise BadArgumentsError(
            [{"location": "name", "message": f"one of {', '.join(PROJECTIONS_BY_NAME)}"}]
        )
    return found


def rebuild(
    container: Container,
    projection: type[DocumentProjection],
    swap: bool,
    started: Callable[[int], None] = lambda total: None,
    progress: Callable[[int], None] = lambda done: None,
    diff_rows: int = 10,
) -> dict[str, Any]:
    """Rebuild ``projection``'s view into its shadow while the live one serves, catch it
    up to the head, diff it against the live view, and swap only when ``swap``.
    ``started`` hears how many events the build applies, ``progress`` each batch."""
    rebuilding = ProjectionRebuild(container.app, projection)
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
        except LiveViewBehindError as error:
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
