"""The OpenAPI 3.1 document, generated from what validates requests and renders answers.

Command operations come from the registry (each spec with an endpoint), request bodies
from its payload models, read operations and their documents from the projections
(each with a path), and the other responses from ``interfaces.http.schemas``.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from apispec import APISpec
from flask import Blueprint, Response, current_app, jsonify
from pydantic import BaseModel

from application.payloads import RFC3339
from application.registry import CommandRegistry, CommandSpec
from interfaces.arguments import COMMAND_TYPE, DURATION, RESOURCE, STATUSES
from interfaces.http import schemas
from interfaces.http.admin import MAX_LIST_LIMIT, RebuildRequest, RedriveRequest, ReplayRequest
from interfaces.http.context import container
from interfaces.http.operations import DELIVERY_STATUSES
from interfaces.http.problems import Problem, explanation_page, problem_types
from interfaces.http.route_docs import describe
from projections.catalog import PROJECTIONS
from projections.command_registry import CommandDocument
from projections.document_projection import DocumentProjection
from projections.document_view import CURSOR
from projections.sagas import STATES

openapi = Blueprint("openapi", __name__)


@openapi.get("/openapi.json")
def document() -> Response:
    """The OpenAPI 3.1 document."""
    document = build_openapi(container().registry)
    describe(document, current_app)
    return jsonify(document)


@openapi.get("/problems/<kind>")
def problem_type(kind: str) -> Response:
    """The page a problem's ``type`` URI answers: what the problem means."""
    text = problem_types().get(kind)
    if text is None:
        raise Problem(404, "Not found", f"no problem type {kind}")
    return Response(explanation_page(kind, text), mimetype="text/html")


PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}


def _problem(description: str, **headers: str) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": PROBLEM}
    if headers:
        response["headers"] = {n: {"schema": {"type": t}} for n, t in headers.items()}
    return response


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


COMMON_ERRORS = {
    "401": _problem("missing or bad credentials", **{"WWW-Authenticate": "string"}),
    "403": _problem("the API key does not have the scope this needs"),
    "429": _problem("too many requests or streams for this API key", **{"Retry-After": "string"}),
    "503": _problem("the event store cannot be reached", **{"Retry-After": "string"}),
}


def build_openapi(registry: CommandRegistry) -> dict[str, Any]:
    """The OpenAPI 3.1 document of this service."""
    spec = APISpec(
        title="Boxoffice",
        version="0.1.0",
        openapi_version="3.1.0",
        info={
            "description": "Seat reservations; every state change is an asynchronous command.",
            "license": {"name": "MIT", "identifier": "MIT"},
            "contact": {"name": "The Boxoffice maintainers"},
        },
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    for model in (
        schemas.Accepted,
        CommandDocument,
        schemas.CommandStatus,
        schemas.CommandPage,
        schemas.ProjectionList,
        schemas.WebhookList,
        schemas.Health,
        schemas.ProblemDetails,
    ):
        _add_model(spec, model)
    for command in registry:
        if command.endpoint is not None:
            _add_command_route(spec, command)
    _add_reads(spec)
    _add_admin(spec)
    for projection in PROJECTIONS:
        if projection.path is not None:
            _add_document_read(spec, projection)
    document: dict[str, Any] = spec.to_dict()
    document["security"] = [{"bearer": []}, {}]
    # Relative: the service's own origin, wherever it is deployed.
    document["servers"] = [{"url": "/", "description": "this service"}]
    return document


def _field_schema(fields: dict[str, Any], name: str) -> dict[str, Any]:
    """A path parameter's schema: its payload field's, without what only a body has."""
    field = fields.get(name, {"type": "string"})
    return {k: v for k, v in field.items() if k in ("type", "pattern", "format", "maxLength")}


def _add_model(spec: APISpec, model: type[BaseModel], name: str | None = None) -> str:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for def_name, definition in schema.pop("$defs", {}).items():
        if def_name not in spec.components.schemas:
            spec.components.schema(def_name, definition)
    name = name or model.__name__
    if name not in spec.components.schemas:
        spec.components.schema(name, schema)
    return name


def _add_command_route(spec: APISpec, command: CommandSpec[Any]) -> None:
    endpoint = command.endpoint
    assert endpoint is not None
    body = command.payload.model_json_schema(ref_template="#/components/schemas/{model}")
    for def_name, definition in body.pop("$defs", {}).items():
        if def_name not in spec.components.schemas:
            spec.components.schema(def_name, definition)
    # Path parameters are given by the path only.
    path_fields = endpoint.parameters
    body_fields = dict(body.get("properties", {}))
    body["properties"] = {k: v for k, v in body_fields.items() if k not in path_fields}
    body["required"] = [f for f in body.get("required", []) if f not in path_fields]
    body_name = f"{command.name}Body"
    spec.components.schema(body_name, body)
    created = "201" if command.creates else "200"
    operation = {
        "operationId": command.name,
        "summary": endpoint.summary,
        "description": inspect.getdoc(command.payload) or endpoint.summary,
        "parameters": [
            {"name": p, "in": "path", "required": True, "schema": _field_schema(body_fields, p)}
            for p in path_fields
        ]
        + [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
                "description": "makes retries safe: the same key and payload get the same answer",
            },
            {
                "name": "Prefer",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "wait=N: answer synchronously if the outcome is known within N s",
            },
            {
                "name": "Callback-Url",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "format": "uri", "maxLength": 2048},
                "description": "POSTed the terminal status, signed (Boxoffice-Signature)",
            },
        ],
        "callbacks": {
            "outcome": {
                "{$request.header.Callback-Url}": {
                    "post": {
                        "summary": "The command's terminal status",
                        "parameters": [
                            {
                                "name": "Boxoffice-Signature",
                                "in": "header",
                                "required": True,
                                "schema": {"type": "string"},
                                "description": "t=<unix>,v1=<hex HMAC-SHA256 of 't.body'>",
                            },
                            {
                                "name": "Boxoffice-Delivery",
                                "in": "header",
                                "required": True,
                                "schema": {"type": "string"},
                                "description": "the same for every retry of one delivery",
                            },
                        ],
                        "requestBody": {
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/CommandDocument"}
                                }
                            }
                        },
                        "responses": {
                            "2XX": {"description": "received"},
                            "4XX": {
                                "description": "refused: retried with backoff like any "
                                "answer but a 2XX, then parked (GET /webhooks?status=parked)"
                            },
                        },
                    }
                }
            }
        },
        "requestBody": {
            "required": endpoint.method == "PUT",
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{body_name}"}}
            },
        },
        "responses": {
            "202": {
                **_json("Accepted", "accepted; its status is at Location"),
                "headers": {
                    "Location": {"schema": {"type": "string"}},
                    "Retry-After": {"schema": {"type": "string"}},
                },
                "links": {
                    "GetCommand": {
                        "operationId": "GetCommand",
                        "parameters": {"command_id": "$response.body#/command_id"},
                    }
                },
            },
            created: {
                **_json("CommandStatus", "Prefer: wait, and the command succeeded"),
                "headers": {
                    "Content-Location": {"schema": {"type": "string"}},
                    "Preference-Applied": {"schema": {"type": "string"}},
                    "Vary": {"schema": {"type": "string"}},
                    **({"Location": {"schema": {"type": "string"}}} if command.creates else {}),
                },
            },
            "400": _problem("invalid command: every violation is listed"),
            "404": _problem("Prefer: wait, and the target does not exist"),
            "409": _problem("the id is taken, or (Prefer: wait) the state forbids it"),
            "413": _problem("body too large"),
            "415": _problem("not application/json"),
            "422": _problem("Idempotency-Key reused for another command, or a broken rule"),
            **COMMON_ERRORS,
        },
    }
    spec.path(path=endpoint.path, operations={endpoint.method.lower(): operation})


def _get(
    spec: APISpec,
    path: str,
    operation_id: str,
    summary: str,
    parameters: list[dict[str, Any]],
    ok: dict[str, Any],
    **errors: str,
) -> None:
    """Document a read: its 200, its own errors (by status) and the common ones."""
    responses = {"200": ok, **{s.lstrip("_"): _problem(d) for s, d in errors.items()}}
    spec.path(
        path=path,
        operations={
            "get": {
                "operationId": operation_id,
                "summary": summary,
                "parameters": parameters,
                "responses": {**responses, **COMMON_ERRORS},
            }
        },
    )


def _path_id(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


RESOURCE_SCHEMA = {"type": "string", "pattern": RESOURCE.pattern}
TIME_SCHEMA = {"type": "string", "format": "date-time", "pattern": RFC3339}

CONSISTENCY = {
    "name": "Consistency-Token",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
    "description": "wait until the view includes this position (a command's outcome)",
}
BAD_CONSISTENCY = "bad Consistency-Token"


def _add_document_read(spec: APISpec, projection: type[DocumentProjection]) -> None:
    assert projection.path is not None
    (parameter,) = re.findall(r"\{(\w+)\}", projection.path)
    kind = parameter.removesuffix("_id")
    schema = _add_model(spec, projection.document)
    summary = (projection.document.__doc__ or kind).strip().splitlines()[0].rstrip(".")
    _get(
        spec,
        projection.path,
        f"Get{kind.capitalize()}",
        f"{summary}, from its read model",
        [
            _path_id(parameter, projection.id_schema),
            CONSISTENCY,
            {"name": "Prefer", "in": "header", "schema": {"type": "string"}},
        ],
        _json(schema, f"the {kind}"),
        _400=BAD_CONSISTENCY,
        _404=f"no such {kind}",
    )


def _add_reads(spec: APISpec) -> None:
    _get(
        spec,
        "/commands/{command_id}",
        "GetCommand",
        "A command's registry entry",
        [_path_id("command_id"), CONSISTENCY],
        _json("CommandStatus", "the entry"),
        _400=BAD_CONSISTENCY,
        _404="never accepted",
        _410="past the retention window",
    )
    _get(
        spec,
        "/commands/{command_id}/events",
        "StreamCommand",
        "Server-sent events: one per status change, until a terminal one",
        [
            _path_id("command_id"),
            {
                "name": "Last-Event-ID",
                "in": "header",
                "schema": {"type": "string", "pattern": "^-?[0-9]{1,9}$"},
            },
        ],
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
        _400="bad Last-Event-ID",
        _404="never accepted",
    )
    uuid = {"type": "string", "format": "uuid"}
    _get(
        spec,
        "/commands",
        "ListCommands",
        "Registry entries by filter, oldest first, cursor-paged",
        [
            {"name": "status", "in": "query", "schema": {"enum": list(STATUSES)}},
            {
                "name": "type",
                "in": "query",
                "schema": {"type": "string", "pattern": COMMAND_TYPE.pattern},
            },
            {"name": "aggregate_id", "in": "query", "schema": uuid},
            {"name": "correlation_id", "in": "query", "schema": uuid},
            _query("resource", RESOURCE_SCHEMA, "a resource path (/shows/s1) or id (s1)"),
            _query("since", TIME_SCHEMA, "submitted from"),
            _query("until", TIME_SCHEMA, "submitted before"),
            {
                "name": "cursor",
                "in": "query",
                "schema": {"type": "string", "pattern": f"^{CURSOR.pattern}$"},
                "description": "links.next of the previous page",
            },
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": 500},
            },
        ],
        _json("CommandPage", "a page"),
        _400="bad filter",
    )
    _get(
        spec,
        "/projections",
        "ListProjections",
        "Read models' positions and lag",
        [],
        _json("ProjectionList", "positions"),
    )
    _get(
        spec,
        "/webhooks",
        "ListWebhooks",
        "Webhook deliveries; status=parked lists those given up on (admin)",
        [{"name": "status", "in": "query", "schema": {"enum": list(DELIVERY_STATUSES)}}],
        _json("WebhookList", "deliveries"),
        _400="bad status",
    )
    spec.path(
        path="/problems/{kind}",
        operations={
            "get": {
                "operationId": "ExplainProblem",
                "summary": "What a problem type means (the type URI of every error answer)",
                "security": [{}],
                "parameters": [_path_id("kind")],
                "responses": {
                    "200": {
                        "description": "the explanation",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    "404": _problem("no such problem type"),
                },
            }
        },
    )
    spec.path(
        path="/health",
        operations={
            "get": {
                "operationId": "Health",
                "summary": "Whether the event store and the broker are reachable",
                "security": [{}],
                "responses": {
                    "200": _json("Health", "both reachable"),
                    "503": _json("Health", "one is not"),
                },
            }
        },
    )


ARRAY: dict[str, Any] = {"type": "array", "items": {"type": "object"}}
OBJECT: dict[str, Any] = {"type": "object"}
ID: dict[str, Any] = {"type": "string", "format": "uuid"}


def _object(description: str, **properties: dict[str, Any]) -> dict[str, Any]:
    """A JSON object answer whose ``properties`` are always there."""
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _admin(
    spec: APISpec,
    method: str,
    path: str,
    operation_id: str,
    summary: str,
    ok: dict[str, Any],
    parameters: list[dict[str, Any]] | None = None,
    body: type[BaseModel] | None = None,
    **errors: str,
) -> None:
    """Document one ``/admin`` operation (scope ``admin``)."""
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": f"{summary} (admin)",
        "parameters": parameters or [],
        "responses": {
            "200": ok,
            **{s.lstrip("_"): _problem(d) for s, d in errors.items()},
            **COMMON_ERRORS,
        },
    }
    if body is not None:
        name = _add_model(spec, body)
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
        operation["responses"]["400"] = _problem("malformed JSON, or a bad field")
        operation["responses"]["413"] = _problem("body too large")
    spec.path(path=path, operations={method: operation})


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


def _add_admin(spec: APISpec) -> None:
    text = {"type": "string"}
    time = TIME_SCHEMA
    limit = _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT})
    items = _object("the items", items=ARRAY)
    _admin(
        spec,
        "get",
        "/admin/commands",
        "AdminListCommands",
        "Commands by status, type, resource, correlation id and time, oldest first",
        items,
        [
            _query("status", {"enum": list(STATUSES)}),
            _query("type", {"type": "string", "pattern": COMMAND_TYPE.pattern}),
            _query(
                "resource", RESOURCE_SCHEMA, "a resource path (/shows/s1) or a client's id (s1)"
            ),
            _query("correlation_id", {"type": "string", "format": "uuid"}),
            _query("since", time),
            _query("until", time),
            limit,
        ],
        _400="bad filter",
    )
    _admin(
        spec,
        "get",
        "/admin/commands/{command_id}",
        "AdminGetCommand",
        "A command's record with tracebacks and the events its success saved",
        _object("the record", command_id=ID, attempts=ARRAY, caused=ARRAY),
        [_path_id("command_id")],
        _404="no such command",
    )
    _admin(
        spec,
        "get",
        "/admin/deadletters",
        "AdminListDeadLetters",
        "Dead-lettered commands and their counts per error type",
        _object(
            "the dead letters",
            items=ARRAY,
            counts={"type": "object", "additionalProperties": {"type": "integer"}},
        ),
        [_query("type", text, "only those whose last error is of this type")],
    )
    _admin(
        spec,
        "post",
        "/admin/deadletters/redrive",
        "AdminRedrive",
        "Re-drive dead letters: ids, every one of a type, or all",
        _object("what was re-driven or skipped, and why", results=ARRAY),
        body=RedriveRequest,
    )
    _admin(
        spec,
        "get",
        "/admin/sagas",
        "AdminListSagas",
        "Sagas by state, stuck for a while, with a dead-lettered step, by start time",
        items,
        [
            _query("state", {"enum": list(STATES)}),
            _query(
                "stuck_for", {"type": "string", "pattern": DURATION.pattern}, "30s, 5m, 2h or 1d"
            ),
            _query("dead_lettered", {"enum": ["true", "false"]}),
            _query("since", time),
            _query("until", time),
            limit,
        ],
        _400="bad filter",
    )
    _admin(
        spec,
        "get",
        "/admin/sagas/{saga}",
        "AdminGetSaga",
        "A saga's timeline, by its id or its reservation's",
        _object("the saga", saga_id=ID, timeline=ARRAY),
        [_path_id("saga")],
        _404="no such saga",
    )
    _admin(
        spec,
        "post",
        "/admin/sagas/replay",
        "AdminReplaySagas",
        "Replay sagas with the deployed code in a dry run, and report the differences",
        _object("the summary and the sagas that differ", summary=OBJECT, sagas=ARRAY),
        body=ReplayRequest,
    )
    _admin(
        spec,
        "post",
        "/admin/sagas/{saga}/retry",
        "AdminRetrySaga",
        "Re-issue a saga's stuck step",
        _object("the steps re-issued or pending", saga_id=ID, steps=ARRAY),
        [_path_id("saga")],
        _404="no such saga",
        _409="the saga has no stuck step",
    )
    _admin(
        spec,
        "get",
        "/admin/projections",
        "AdminProjections",
        "Each view's position, the head, its lag and its events/s",
        items,
        [_query("sample", {"type": "number", "minimum": 0.1, "maximum": 5})],
        _400="bad sample",
    )
    _admin(
        spec,
        "post",
        "/admin/projections/{name}/rebuild",
        "AdminRebuildProjection",
        "Rebuild a view beside the live one, diff it, swap it in only with swap",
        _object(
            "the rebuild and the diff",
            events={"type": "integer"},
            diff=OBJECT,
            swapped={"type": "boolean"},
        ),
        [_path_id("name")],
        body=RebuildRequest,
        _404="no such projection",
        _409="the live view is behind the rebuilt one: not swapped",
    )
