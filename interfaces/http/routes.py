"""The HTTP resources: commands, shows, health."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, get_args
from urllib.parse import urlencode
from uuid import UUID

from flask import Blueprint, Response, jsonify, request

from application.command import TERMINAL, Status
from application.commands import present_show
from application.documents import present_command
from application.reservations import present_reservation
from application.unit_of_work import find_aggregate
from domain.reservation import Reservation
from domain.reservation_saga import ReservationSaga
from domain.show import Show
from interfaces.bootstrap import Container
from interfaces.http.auth import authenticate
from interfaces.http.openapi import COMMAND_ROUTES, build_openapi
from interfaces.http.problems import Problem
from interfaces.http.submit import container, prefer_wait, submit
from projections.documents import present_saga
from projections.views import InvalidCursorError

api = Blueprint("api", __name__)
logger = logging.getLogger(__name__)


for _route in COMMAND_ROUTES:
    api.add_url_rule(
        _route.rule,
        endpoint=_route.command_type,
        view_func=partial(submit, _route.command_type),
        methods=[_route.method],
    )


@api.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document."""
    return jsonify(build_openapi(container().registry))


@api.get("/shows/<show_id>")
def get_show(show_id: str) -> Response:
    """The show from its read model."""
    document = _read("shows", Show.create_id(show_id), Show, present_show)
    if document is None:
        raise Problem(404, "Not found", f"no show {show_id}")
    return jsonify(document)


@api.get("/reservations/<reservation_id>")
def get_reservation(reservation_id: str) -> Response:
    """The reservation from its read model."""
    key = Reservation.create_id(reservation_id)
    document = _read("reservations", key, Reservation, present_reservation)
    if document is None:
        raise Problem(404, "Not found", f"no reservation {reservation_id}")
    return jsonify(document)


@api.get("/sagas/<saga_id>")
def get_saga(saga_id: str) -> Response:
    """A saga's state and its timeline: its decisions and the commands they issued."""
    key = _uuid_or_404(saga_id, "saga")
    document = _read("sagas", key, ReservationSaga, present_saga)
    if document is None:
        raise Problem(404, "Not found", f"no saga {saga_id}")
    built = container()
    decisions = [
        {
            "at": event.timestamp.isoformat(),
            "kind": "decision",
            "name": type(event).__name__,
            "issued": [c["type"] for c in getattr(event, "commands", [])],
        }
        for event in _saga_events(built, key)
    ]
    registry = built.views.get("command_registry")
    commands = registry.page({"correlation_id": key}, None, 500)[0] if registry else []
    steps = [
        {
            "at": c["submitted_at"],
            "kind": "command",
            "name": c["type"],
            "command_id": c["command_id"],
            "status": c["status"],
            "causation_id": c["causation_id"],
        }
        for c in commands
    ]
    document["timeline"] = sorted(decisions + steps, key=lambda entry: str(entry["at"]))
    return jsonify(document)


def _saga_events(built: Container, key: UUID) -> list[Any]:
    return list(built.app.repository.event_store.get(key))


def _read(
    view_name: str, key: UUID, cls: type[Any], present: Callable[[Any], dict[str, Any]]
) -> dict[str, Any] | None:
    """A document from a read model (honouring Consistency-Token), or None.

    The in-memory store of unit tests has no views: the aggregate is read instead.
    """
    built = container()
    authenticate(built.settings.api_tokens)
    view = built.views.get(view_name)
    if view is None:
        found = find_aggregate(built.app, key)
        return present(found) if isinstance(found, cls) else None
    _await_consistency(built, view_name)
    document = view.get(key)
    if document is not None:
        document.pop("position", None)
    return document


@api.get("/commands/<command_id>")
def get_command(command_id: str) -> Response:
    """A command's registry entry; 404 for an id that was never accepted."""
    built = container()
    authenticate(built.settings.api_tokens)
    key = _command_key(command_id)
    registry = built.views.get("command_registry")
    if registry is not None:
        _await_consistency(built, "command_registry")
    document = registry.get(key) if registry is not None else None
    if document is None:
        # Accepted but not projected yet: the event store has it already.
        command = built.pipeline.get_command(key)
        if command is None:
            raise Problem(404, "Not found", f"no command {command_id}")
        document = present_command(command)
    _require_retained(built, document)
    return jsonify(_with_consistency(built, document))


@api.get("/commands/<command_id>/events")
def command_events(command_id: str) -> Response:
    """Server-sent events: one per status change, ending at a terminal status.

    Event ids are the index of the change in the command's history, so a client that
    reconnects with ``Last-Event-ID`` receives only what it has not seen.
    """
    built = container()
    authenticate(built.settings.api_tokens)
    key = _command_key(command_id)
    if built.pipeline.get_command(key) is None:
        raise Problem(404, "Not found", f"no command {command_id}")
    last_seen = request.headers.get("Last-Event-ID", "-1").strip()
    if not last_seen.lstrip("-").isdigit():
        raise Problem(
            400,
            "Invalid Last-Event-ID",
            kind="validation-error",
            errors=[{"location": "header.Last-Event-ID", "message": "not an event id"}],
        )
    stream = _status_stream(built, key, max(0, int(last_seen) + 1))
    return Response(
        stream,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _status_stream(built: Container, key: UUID, first: int) -> Iterator[str]:
    try:
        yield from _status_changes(built, key, first)
    except Exception:
        # The 200 and its headers are sent: end the stream with an error event.
        logger.exception("event stream of command %s failed", key)
        detail = {"detail": "the stream failed; reconnect with Last-Event-ID"}
        yield f"event: error\ndata: {json.dumps(detail)}\n\n"


def _status_changes(built: Container, key: UUID, first: int) -> Iterator[str]:
    deadline = time.monotonic() + SSE_MAX_SECONDS
    sent = first
    while True:
        command = built.pipeline.get_command(key)
        assert command is not None
        for index in range(sent, len(command.history)):
            change = {"command_id": str(key), **command.history[index]}
            yield f"id: {index}\nevent: status\ndata: {json.dumps(change)}\n\n"
        sent = max(sent, len(command.history))
        if command.is_terminal or time.monotonic() > deadline:
            return

        def changed(seen: int = sent) -> bool:
            current = built.pipeline.get_command(key)
            return current is not None and len(current.history) > seen

        if not built.watcher.wait(key, SSE_KEEPALIVE_SECONDS, changed):
            yield ": keep-alive\n\n"


@api.get("/commands")
def list_commands() -> Response:
    """Registry entries filtered by status, type, aggregate or correlation id, paged."""
    built = container()
    authenticate(built.settings.api_tokens)
    registry = built.views.get("command_registry")
    if registry is None:
        raise Problem(503, "Service unavailable", "the command registry is not available")
    filters, errors = _list_filters()
    limit = _limit(errors)
    if errors:
        raise Problem(400, "Invalid query", kind="validation-error", errors=errors)
    try:
        documents, cursor = registry.page(filters, request.args.get("cursor"), limit)
    except InvalidCursorError:
        raise Problem(
            400,
            "Invalid query",
            kind="validation-error",
            errors=[{"location": "query.cursor", "message": "not a cursor issued by this API"}],
        ) from None
    body: dict[str, Any] = {
        "items": [_with_consistency(built, d) for d in documents],
        "links": {},
    }
    if cursor is not None:
        body["links"]["next"] = "/commands?" + urlencode({**request.args, "cursor": cursor})
    return jsonify(body)


@api.get("/projections")
def list_projections() -> Response:
    """Each read model's position, the log's head, and the events it has yet to apply.

    ``lag`` counts the pending events the view follows, up to 10 000 (then ``lag_capped``).
    """
    built = container()
    authenticate(built.settings.api_tokens)
    head = built.app.recorder.max_notification_id() or 0
    stalled = built.stalled()
    items = []
    for name in built.views:
        lag = built.view_pending(name, head, limit=LAG_CAP)
        items.append(
            {
                "name": name,
                "position": built.view_position(name),
                "head": head,
                "lag": lag,
                "lag_capped": lag >= LAG_CAP,
                "stalled": stalled.get(name),
            }
        )
    return jsonify({"items": items})


LAG_CAP = 10_000
# Tries in a row on one event after which /health calls a follower stalled (1 + 2 + 4 s).
STALLED_AFTER = 3
# How long a read with a Consistency-Token and no Prefer: wait waits for its view.
CONSISTENCY_WAIT_SECONDS = 5.0
SSE_KEEPALIVE_SECONDS = 15.0
# A stream ends after this long even if the command has not; the client reconnects
# with Last-Event-ID, which frees the server thread meanwhile.
SSE_MAX_SECONDS = 300.0
STATUSES: tuple[str, ...] = get_args(Status)


def _list_filters() -> tuple[dict[str, Any], list[dict[str, str]]]:
    filters: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for name in ("status", "type", "aggregate_id", "correlation_id"):
        value = request.args.get(name)
        if value is None:
            continue
        if name == "status" and value not in STATUSES:
            errors.append({"location": "query.status", "message": f"one of {', '.join(STATUSES)}"})
        elif name.endswith("_id"):
            try:
                filters[name] = UUID(value)
            except ValueError:
                errors.append({"location": f"query.{name}", "message": "must be a UUID"})
            continue
        filters[name] = value
    return filters, errors


def _limit(errors: list[dict[str, str]]) -> int:
    raw = request.args.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= 500:
        errors.append({"location": "query.limit", "message": "a whole number from 1 to 500"})
        return 50
    return int(raw)


def _with_consistency(built: Container, document: dict[str, Any]) -> dict[str, Any]:
    """Adds the outcome's consistency token and which views have caught up with it."""
    position = document.pop("position", None)
    terminal = document.get("status") in TERMINAL
    document["consistency_token"] = str(position) if terminal and position else None
    if position is not None:
        document["projections"] = {name: built.view_reached(name, position) for name in built.views}
    return document


def _await_consistency(built: Container, view_name: str) -> None:
    """With a ``Consistency-Token``, wait until the view has processed that position."""
    token = request.headers.get("Consistency-Token")
    if token is None:
        return
    if not token.isdigit():
        raise Problem(
            400,
            "Invalid consistency token",
            "Consistency-Token must be a token given by this API",
            kind="validation-error",
            errors=[{"location": "header.Consistency-Token", "message": "not a token"}],
        )
    wait = prefer_wait(built.settings.max_wait_seconds)
    if wait is None:
        wait = min(CONSISTENCY_WAIT_SECONDS, built.settings.max_wait_seconds)
    if not built.await_view(view_name, int(token), wait):
        raise Problem(
            503,
            "Not caught up",
            f"the {view_name} view has not reached position {token} yet",
            kind="not-caught-up",
            headers={"Retry-After": "1"},
        )


def _require_retained(built: Container, document: dict[str, Any]) -> None:
    """Raise 410 for a command submitted before the retention window."""
    retention = timedelta(days=built.settings.command_retention_days)
    submitted = datetime.fromisoformat(document["submitted_at"])
    if submitted < datetime.now(UTC) - retention:
        raise Problem(
            410,
            "Gone",
            f"command {document['command_id']} is past the "
            f"{built.settings.command_retention_days:g}-day retention window",
        )


def _command_key(command_id: str) -> UUID:
    return _uuid_or_404(command_id, "command")


def _uuid_or_404(value: str, kind: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise Problem(404, "Not found", f"no {kind} {value}") from None


@api.get("/health")
def health() -> tuple[Response, int]:
    """Whether the event store and the broker can be reached."""
    built = container()
    event_store = _check(built.ping_event_store)
    broker = _check(built.ping_broker)
    reachable = event_store["reachable"] and broker["reachable"]
    stalled = []
    if event_store["reachable"]:
        stalled = [
            {"name": name, **row}
            for name, row in built.stalled().items()
            if row["attempts"] >= STALLED_AFTER
        ]
    body = {
        "status": "ok" if reachable and not stalled else "degraded",
        "event_store": event_store,
        "broker": broker,
        "stalled": stalled,
    }
    # 503 says "do not send me traffic": only for an unreachable dependency. A stalled
    # follower is degraded service that traffic does not make worse.
    return jsonify(body), 200 if reachable else 503


def _check(probe: Any) -> dict[str, Any]:
    try:
        probe()
    except Exception as error:  # noqa: BLE001 - any failure means unreachable here
        return {"reachable": False, "error": str(error) or type(error).__name__}
    return {"reachable": True}
