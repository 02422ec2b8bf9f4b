"""``/commands``: the command registry, and each command's status as it changes."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from flask import Blueprint, Response, jsonify, request

from application.operations import commands as command_ops
from interfaces import arguments
from interfaces.bootstrap import Container
from interfaces.http.auth import ADMIN, READ, authenticate
from interfaces.http.consistency import await_consistency, with_consistency
from interfaces.http.context import container
from interfaces.http.limits import limits
from interfaces.http.problems import Problem, query_flag
from interfaces.http.route_docs import (
    BAD_CONSISTENCY,
    COMMAND_FILTERS,
    CONSISTENCY,
    documented,
    json_answer,
    path_id,
    query,
)
from projections.command_registry import (
    CommandRegistryProjection,
    get_command,
    list_commands,
    present_command,
)
from projections.document_view import CURSOR, InvalidCursorError

commands = Blueprint("commands", __name__)
logger = logging.getLogger(__name__)

SSE_KEEPALIVE_SECONDS = 15.0
# A stream ends after this long even if the command has not; the client reconnects
# with Last-Event-ID, which frees the server thread meanwhile.
SSE_MAX_SECONDS = 300.0
# ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
EVENT_ID = re.compile(r"-?[0-9]{1,9}")
# A page of the registry: this many entries unless ?limit says otherwise, 500 at most.
LIMIT = 50
MAX_LIMIT = 500


@commands.get("/commands/<command_id>")
@documented(
    "GetCommand",
    "A command's registry entry",
    json_answer("CommandStatus", "the entry"),
    [
        path_id("command_id"),
        CONSISTENCY,
        {
            "name": "timeline",
            "in": "query",
            "required": False,
            "schema": {"type": "boolean", "default": False},
            "description": "add the command's hops with their times: accepted, each "
            "attempt's message published, received, started and its outcome, and the "
            "outcome visible in each view",
        },
    ],
    _400=BAD_CONSISTENCY,
    _404="never accepted",
    _410="past the retention window",
)
def command(command_id: str) -> Response:
    """A command's registry entry; 404 for an id that was never accepted."""
    built = container()
    caller = authenticate(built.settings.api_keys, READ)
    key = _command_key(command_id)
    await_consistency(built, CommandRegistryProjection.name)
    document = get_command(built.read_models, key)
    if document is None:
        # Accepted but not projected yet: the event store has it already.
        accepted = built.pipeline.get_command(key)
        if accepted is None:
            raise Problem(404, "Not found", f"no command {command_id}")
        document = present_command(accepted)
        if accepted.is_terminal:
            # Its outcome is in the log before the registry has it: the token is the
            # outcome's position, so that a read sent with it waits for its views.
            document["position"] = built.position_of(key)
    if not caller.sees(document["client"]):
        raise Problem(404, "Not found", f"no command {command_id}")
    _require_retained(built, document)
    if query_flag("timeline"):
        found = built.pipeline.get_command(key)
        if found is not None:
            document = {**document, "timeline": command_ops.command_timeline(built.operator, found)}
    return jsonify(with_consistency(built, [document])[0])


@commands.get("/commands/<command_id>/events")
@documented(
    "StreamCommand",
    "Server-sent events: one per status change, until a terminal one",
    {
        "description": "the stream",
        "content": {
            "text/event-stream": {
                # Each event of the stream; its data is a JSON status change.
                "schema": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "pattern": "^[0-9]+$"},
                        "event": {"enum": ["status", "error"]},
                        "data": {"type": "string"},
                    },
                    "required": ["event", "data"],
                }
            }
        },
    },
    [
        path_id("command_id"),
        {
            "name": "Last-Event-ID",
            "in": "header",
            "schema": {"type": "string", "pattern": "^-?[0-9]{1,9}$"},
        },
    ],
    _400="bad Last-Event-ID",
    _404="never accepted",
)
def command_events(command_id: str) -> Response:
    """Server-sent events: one per status change, ending at a terminal status.

    Event ids are the index of the change in the command's history, so a client that
    reconnects with ``Last-Event-ID`` receives only what it has not seen.
    """
    built = container()
    caller = authenticate(built.settings.api_keys, READ)
    key = _command_key(command_id)
    found = built.pipeline.get_command(key)
    if found is None or not caller.sees(found.client):
        raise Problem(404, "Not found", f"no command {command_id}")
    last_seen = request.headers.get("Last-Event-ID", "-1").strip()
    if not EVENT_ID.fullmatch(last_seen):
        raise Problem(
            400,
            "Invalid Last-Event-ID",
            kind="validation-error",
            errors=[{"location": "header.Last-Event-ID", "message": "not an event id"}],
        )
    release = limits().open_stream(caller.client)
    response = Response(
        _status_stream(built, key, max(0, int(last_seen) + 1)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.call_on_close(release)  # however the stream ends, even unread
    return response


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
        found = built.pipeline.get_command(key)
        assert found is not None
        for index in range(sent, len(found.history)):
            change = {"command_id": str(key), **found.history[index]}
            yield f"id: {index}\nevent: status\ndata: {json.dumps(change)}\n\n"
        sent = max(sent, len(found.history))
        if found.is_terminal or time.monotonic() > deadline:
            return

        def changed(seen: int = sent) -> bool:
            current = built.pipeline.get_command(key)
            return current is not None and (current.is_terminal or len(current.history) > seen)

        if not built.watcher.wait(key, SSE_KEEPALIVE_SECONDS, changed):
            yield ": keep-alive\n\n"


@commands.get("/commands")
@documented(
    "ListCommands",
    "Registry entries by filter, oldest first, cursor-paged",
    json_answer("CommandPage", "a page"),
    [
        *COMMAND_FILTERS,
        query(
            "cursor",
            {"type": "string", "pattern": f"^{CURSOR.pattern}$"},
            "links.next of the previous page",
        ),
        query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
    ],
    _400="bad filter",
)
def command_list() -> Response:
    """Registry entries filtered by status, type, aggregate or correlation id, paged."""
    built = container()
    caller = authenticate(built.settings.api_keys, READ)
    filters, errors = _list_filters()
    if not caller.may(ADMIN):
        filters["client"] = caller.client
    limit = _limit(errors)
    if errors:
        raise Problem(400, "Invalid query", kind="validation-error", errors=errors)
    try:
        documents, cursor = list_commands(
            built.read_models, filters, request.args.get("cursor"), limit
        )
    except InvalidCursorError:
        raise Problem(
            400,
            "Invalid query",
            kind="validation-error",
            errors=[{"location": "query.cursor", "message": "not a cursor (the digits of one)"}],
        ) from None
    body: dict[str, Any] = {"items": with_consistency(built, documents), "links": {}}
    if cursor is not None:
        body["links"]["next"] = "/commands?" + urlencode({**request.args, "cursor": cursor})
    return jsonify(body)


def _list_filters() -> tuple[dict[str, Any], list[dict[str, str]]]:
    try:
        filters = arguments.command_filters(container().catalog, request.args)
    except arguments.BadArgumentsError as bad:
        return {}, bad.errors
    return filters, []


def _limit(errors: list[dict[str, str]]) -> int:
    violations = arguments.BadArgumentsError(errors)
    return arguments.parse_limit(
        request.args.get("limit"), LIMIT, MAX_LIMIT, "query.limit", violations
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
    try:
        return UUID(command_id)
    except ValueError:
        raise Problem(404, "Not found", f"no command {command_id}") from None
