"""``/admin/...``: the operator's CLI over HTTP, for keys with the ``admin`` scope.

The same operations and documents as ``boxoffice commands|deadletters|sagas|projections``
(:mod:`application.operations`); each view's lag and rate is ``GET /projections?sample=``
(:mod:`interfaces.http.status`). Replays run the deployed saga code only: a candidate
class (``--saga-class``) is imported by the CLI, never named over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from typing import Any
from uuid import UUID

from flask import Blueprint, Response, jsonify, request

from application.operations import NotFoundError
from application.operations import commands as command_ops
from application.operations import sagas as saga_ops
from application.operations import views as view_ops
from interfaces import arguments
from interfaces.http.auth import ADMIN, authenticate
from interfaces.http.bodies import model_body
from interfaces.http.context import container
from interfaces.http.problems import Problem, operation_problems, query_flag
from interfaces.http.route_docs import (
    ARRAY,
    COMMAND_FILTERS,
    ID,
    OBJECT,
    TIME_SCHEMA,
    documented,
    object_answer,
    path_id,
    query,
)
from interfaces.http.schemas import RebuildRequest, RedriveRequest, ReplayRequest
from projections.sagas import STATES

admin = Blueprint("admin", __name__, url_prefix="/admin")

LIST_LIMIT = 50
MAX_LIST_LIMIT = 1_000
# A body of ids, a type or a flag: small.
MAX_ADMIN_BODY = 64 * 1024
ITEMS = object_answer("the items", items=ARRAY)
LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT})


def _caller() -> Any:
    built = container()
    authenticate(built.settings.api_keys, ADMIN)
    return built


def _query(parse: Callable[[], Any]) -> tuple[Any, int]:
    """The filters ``parse`` makes of the query, and the limit; every violation at once."""
    violations = arguments.BadArgumentsError()
    limit = arguments.parse_limit(
        request.args.get("limit"), LIST_LIMIT, MAX_LIST_LIMIT, "query.limit", violations
    )
    try:
        filters = parse()
    except arguments.BadArgumentsError as bad:
        violations.errors = bad.errors + violations.errors
        filters = None
    with operation_problems():
        violations.raise_any()
    return filters, limit


def _saga_key(saga: str) -> UUID:
    """The saga a path names (its id or its reservation's); a name of none is a 404."""
    try:
        return arguments.saga_id_of(container().catalog.sagas, saga)
    except arguments.BadArgumentsError:
        raise NotFoundError(f"no saga {saga}") from None


@admin.get("/commands")
@documented(
    "AdminListCommands",
    "Commands by status, type, resource, correlation id and time, oldest first (admin)",
    ITEMS,
    [
        *COMMAND_FILTERS,
        LIMIT,
    ],
    _400="bad filter",
)
def commands() -> Response:
    """Registry entries by status, type, resource, correlation id and time, oldest first."""
    built = _caller()
    filters, limit = _query(lambda: arguments.command_filters(built.catalog, request.args))
    return jsonify({"items": list(islice(built.operator.walk("command_registry", filters), limit))})


@admin.get("/commands/<command_id>")
@documented(
    "AdminGetCommand",
    "A command's record with tracebacks and the events its success saved (admin)",
    object_answer("the record", command_id=ID, attempts=ARRAY, caused=ARRAY),
    [path_id("command_id")],
    _404="no such command",
)
def command(command_id: str) -> Response:
    """A command's record: attempts with tracebacks, history, the events it caused."""
    built = _caller()
    with operation_problems():
        key = arguments.parse_uuid(command_id, "path.command_id", arguments.BadArgumentsError())
        if key is None:
            raise NotFoundError(f"no command {command_id}")
        return jsonify(command_ops.command_detail(built.operator, key))


@admin.get("/deadletters")
@documented(
    "AdminListDeadLetters",
    "Dead-lettered commands and their counts per error type (admin)",
    object_answer(
        "the dead letters",
        items=ARRAY,
        counts={"type": "object", "additionalProperties": {"type": "integer"}},
    ),
    [query("type", {"type": "string"}, "only those whose last error is of this type")],
)
def deadletters() -> Response:
    """Dead-lettered commands (of one error type with ``type``), and counts per type."""
    built = _caller()
    return jsonify(command_ops.dead_letters(built.operator, request.args.get("type")))


@admin.post("/deadletters/redrive")
@documented(
    "AdminRedrive",
    "Re-drive dead letters: ids, every one of a type, or all (admin)",
    object_answer("what was re-driven or skipped, and why", results=ARRAY),
    body=RedriveRequest,
)
def redrive() -> Response:
    """Re-drive dead letters (ids, a type, or all); each keeps its id."""
    built = _caller()
    body: RedriveRequest = model_body(RedriveRequest, MAX_ADMIN_BODY)
    chosen = sum([bool(body.command_ids), body.type is not None, body.all])
    if chosen != 1:
        raise Problem(
            400,
            "Invalid request",
            kind="validation-error",
            errors=[{"location": "body", "message": "give command_ids, type or all (one)"}],
        )
    results = command_ops.redrive(
        built.operator, body.command_ids, body.type, body.all, "admin-api", body.reason
    )
    return jsonify({"results": results})


@admin.get("/sagas")
@documented(
    "AdminListSagas",
    "Sagas by state, stuck for a while, with a dead-lettered step, by start time (admin)",
    ITEMS,
    [
        query("state", {"enum": list(STATES)}),
        query(
            "stuck_for",
            {"type": "string", "pattern": arguments.DURATION.pattern},
            "30s, 5m, 2h or 1d",
        ),
        query("dead_lettered", {"enum": ["true", "false"]}),
        query("since", TIME_SCHEMA),
        query("until", TIME_SCHEMA),
        LIMIT,
    ],
    _400="bad filter",
)
def sagas() -> Response:
    """Sagas by state, stuck for a while, with a dead-lettered step, by start time."""
    _caller()
    args = request.args
    filters, limit = _query(
        lambda: arguments.saga_filters(
            state=args.get("state"),
            stuck_for=args.get("stuck_for"),
            since=args.get("since"),
            until=args.get("until"),
        )
    )
    step_status = ("dead_lettered",) if query_flag("dead_lettered") else ()
    found = saga_ops.list_sagas(container().operator, filters, step_status)[:limit]
    return jsonify({"items": found})


@admin.get("/sagas/<saga>")
@documented(
    "AdminGetSaga",
    "A saga's timeline, by its id or its reservation's (admin)",
    object_answer("the saga", saga_id=ID, timeline=ARRAY),
    [path_id("saga")],
    _404="no such saga",
)
def saga(saga: str) -> Response:
    """A saga's timeline, by its id or its reservation's."""
    built = _caller()
    with operation_problems():
        return jsonify(saga_ops.saga_detail(built.operator, _saga_key(saga)))


@admin.post("/sagas/replay")
@documented(
    "AdminReplaySagas",
    "Replay sagas with the deployed code in a dry run, and report the differences (admin)",
    object_answer("the summary and the sagas that differ", summary=OBJECT, sagas=ARRAY),
    body=ReplayRequest,
)
def replay() -> tuple[Response, int]:
    """Replay sagas with the deployed code in a dry run; the summary, and the sagas that
    did not replay identically (all with ``show_all``)."""
    built = _caller()
    body: ReplayRequest = model_body(ReplayRequest, MAX_ADMIN_BODY)
    query = body.all or body.state or body.failed_step or body.since or body.until
    if bool(body.sagas) == bool(query):
        raise Problem(
            400,
            "Invalid request",
            kind="validation-error",
            errors=[{"location": "body", "message": "give sagas, or all or a query"}],
        )
    with operation_problems():
        if body.sagas:
            ids = [arguments.saga_id_of(built.catalog.sagas, s) for s in body.sagas]
        else:
            filters = arguments.saga_filters(
                state=body.state, since=body.since, until=body.until, location="body"
            )
            step_status = ("failed", "dead_lettered") if body.failed_step else ()
            ids = [
                UUID(s["saga_id"])
                for s in saga_ops.list_sagas(built.operator, filters, step_status)
            ]
        done = saga_ops.replay(built.operator, ids)
    return jsonify(done.as_dict(every=body.show_all)), 200


@admin.post("/sagas/<saga>/retry")
@documented(
    "AdminRetrySaga",
    "Re-issue a saga's stuck step (admin)",
    object_answer("the steps re-issued or pending", saga_id=ID, steps=ARRAY),
    [path_id("saga")],
    _404="no such saga",
    _409="the saga has no stuck step",
)
def retry(saga: str) -> Response:
    """Re-issue a saga's stuck step; again while it is pending issues nothing."""
    built = _caller()
    with operation_problems():
        return jsonify(saga_ops.retry_saga(built.operator, _saga_key(saga), by="admin-api"))


@admin.post("/projections/<name>/rebuild")
@documented(
    "AdminRebuildProjection",
    "Rebuild a view beside the live one, diff it, swap it in only with swap (admin)",
    object_answer(
        "the rebuild and the diff",
        events={"type": "integer"},
        diff=OBJECT,
        swapped={"type": "boolean"},
    ),
    [path_id("name")],
    body=RebuildRequest,
    _404="no such projection",
    _409="the live view is behind the rebuilt one: not swapped",
)
def rebuild(name: str) -> Response:
    """Rebuild a view into its shadow, diff it, and swap only with ``swap``."""
    built = _caller()
    body: RebuildRequest = model_body(RebuildRequest, MAX_ADMIN_BODY)
    with operation_problems():
        try:
            projection = arguments.projection_class(name)
        except arguments.BadArgumentsError:
            raise NotFoundError(f"no projection {name}") from None
        return jsonify(view_ops.rebuild(built.operator, projection, body.swap, diff_rows=body.rows))
