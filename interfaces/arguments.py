"""The operator's and the client's query arguments, checked: filters for the views.

Shared by ``/commands``, ``/admin`` and the CLI, so that one argument is read one way
everywhere. A :class:`BadArgumentsError` lists every bad argument, as a 400 does.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, get_args
from uuid import UUID

from eventsourcing.utils import resolve_topic
from pydantic import TypeAdapter, ValidationError

from application.catalog import CommandCatalog
from application.command import Status
from application.payloads import Timestamp
from application.queries import Between, OneOf
from application.saga_slice import SagaSlice
from projections.document_projection import DocumentProjection
from projections.sagas import RUNNING, STATES
from projections.views import PROJECTIONS_BY_NAME

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


def resource_paths(catalog: CommandCatalog, resource: str) -> tuple[str, ...] | None:
    """The resources ``resource`` may mean: itself when it is a path (``/shows/hamlet``),
    else that id under every resource template of the commands (``hamlet``)."""
    if not RESOURCE.fullmatch(resource):
        return None
    if resource.startswith("/"):
        return (resource,)
    paths = set()
    for spec in catalog:
        fields = [name for _, name, _, _ in string.Formatter().parse(spec.resource) if name]
        if len(fields) == 1:
            paths.add(spec.resource.format_map({fields[0]: resource}))
    return tuple(sorted(paths))


def command_filters(
    catalog: CommandCatalog, args: Mapping[str, str | None], location: str = "query"
) -> dict[str, Any]:
    """The registry filters of ``args`` (``status``, ``type``, ``resource``,
    ``correlation_id``, ``aggregate_id``, ``since``, ``until``; a query string or the
    CLI's options): ``/commands``, ``/admin/commands`` and ``boxoffice commands list``
    read them alike. Raises :class:`BadArgumentsError` with every bad one."""
    violations = BadArgumentsError()
    filters: dict[str, Any] = {}
    status, command_type, resource = args.get("status"), args.get("type"), args.get("resource")
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
        paths = resource_paths(catalog, resource)
        if paths is None:
            violations.add(f"{location}.resource", "a resource path (/shows/s1) or id (s1)")
        else:
            filters["resource"] = OneOf(paths)
    for name in ("correlation_id", "aggregate_id"):
        parsed = parse_uuid(args.get(name), f"{location}.{name}", violations)
        if parsed is not None:
            filters[name] = parsed
    period = time_range(args.get("since"), args.get("until"), location, violations)
    if period is not None:
        filters["submitted_at"] = period
    violations.raise_any()
    return filters


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


def saga_id_of(slices: Sequence[SagaSlice[Any]], value: str) -> UUID:
    """A saga's id from its id or the id it was started for (its reservation's), in
    the first saga slice registered."""
    try:
        return UUID(value)
    except ValueError:
        if not RESOURCE_ID.fullmatch(value) or not slices:
            raise BadArgumentsError(
                [{"location": "saga", "message": "a saga or reservation id"}]
            ) from None
        return slices[0].saga_id(value)


def candidate_slices(
    slices: Sequence[SagaSlice[Any]], saga_class: str | None
) -> list[SagaSlice[Any]]:
    """The deployed slices, or with the topic of a saga class (``package.module:Class``,
    a candidate fix) the slice of its kind running that class."""
    if saga_class is None:
        return list(slices)
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
    return [kinds[0].running(candidate)]


def projection_class(name: str) -> type[DocumentProjection]:
    """The projection called ``name``; raises :class:`BadArgumentsError`."""
    found = PROJECTIONS_BY_NAME.get(name)
    if found is None:
        raise BadArgumentsError(
            [{"location": "name", "message": f"one of {', '.join(PROJECTIONS_BY_NAME)}"}]
        )
    return found
