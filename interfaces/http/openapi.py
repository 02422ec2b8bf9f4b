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
from flask import Blueprint, Flask, Response, current_app, jsonify
from pydantic import BaseModel

from application.catalog import CommandCatalog, CommandSpec
from interfaces.http import schemas
from interfaces.http.context import container
from interfaces.http.problems import Problem, explanation_page, problem_types
from interfaces.http.route_docs import (
    BAD_CONSISTENCY,
    COMMON_ERRORS,
    CONSISTENCY,
    Operation,
    describe,
    documented,
    documented_routes,
    json_answer,
    path_id,
    problem,
)
from projections.command_registry import CommandDocument
from projections.document_projection import DocumentProjection
from projections.views import PROJECTIONS

openapi = Blueprint("openapi", __name__)


@openapi.get("/openapi.json")
def document() -> Response:
    """The OpenAPI 3.1 document."""
    return jsonify(build_openapi(container().catalog, current_app))


@openapi.get("/problems/<kind>")
@documented(
    "ExplainProblem",
    "What a problem type means (the type URI of every error answer)",
    {"description": "the explanation", "content": {"text/html": {"schema": {"type": "string"}}}},
    [path_id("kind")],
    public=True,
    _404="no such problem type",
)
def problem_type(kind: str) -> Response:
    """The page a problem's ``type`` URI answers: what the problem means."""
    text = problem_types().get(kind)
    if text is None:
        raise Problem(404, "Not found", f"no problem type {kind}")
    return Response(explanation_page(kind, text), mimetype="text/html")


def build_openapi(catalog: CommandCatalog, app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the service ``app`` serves: the command routes of
    ``catalog``, the routes of ``app`` that declare their operation, and the
    documents of the projections that have a path."""
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
    for command in catalog:
        if command.endpoint is not None:
            _add_command_route(spec, command)
    for method, path, operation in documented_routes(app):
        _add_operation(spec, method, path, operation)
    for projection in PROJECTIONS:
        if projection.path is not None:
            _add_document_read(spec, projection)
    document: dict[str, Any] = spec.to_dict()
    document["security"] = [{"bearer": []}, {}]
    # Relative: the service's own origin, wherever it is deployed.
    document["servers"] = [{"url": "/", "description": "this service"}]
    describe(document, app)
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
                **json_answer(
                    "Accepted",
                    "accepted; its status is at Location, its outcome expected in "
                    "Retry-After seconds",
                ),
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
                **json_answer("CommandStatus", "Prefer: wait, and the command succeeded"),
                "headers": {
                    "Content-Location": {"schema": {"type": "string"}},
                    "Preference-Applied": {"schema": {"type": "string"}},
                    "Vary": {"schema": {"type": "string"}},
                    **({"Location": {"schema": {"type": "string"}}} if command.creates else {}),
                },
            },
            "400": problem("invalid command: every violation is listed"),
            "404": problem("Prefer: wait, and the target does not exist"),
            "409": problem("the id is taken, or (Prefer: wait) the state forbids it"),
            "413": problem("body too large"),
            "415": problem("not application/json"),
            "422": problem("Idempotency-Key reused for another command, or a broken rule"),
            **COMMON_ERRORS,
            "503": problem(
                "the event store cannot be reached, or the backlog is full (nothing was "
                "accepted; Retry-After says when there is room)",
                **{"Retry-After": "string"},
            ),
        },
    }
    spec.path(path=endpoint.path, operations={endpoint.method.lower(): operation})


def _add_operation(spec: APISpec, method: str, path: str, operation: Operation) -> None:
    body = _add_model(spec, operation.body) if operation.body is not None else None
    spec.path(path=path, operations={method: operation.render(body)})


def _add_document_read(spec: APISpec, projection: type[DocumentProjection]) -> None:
    assert projection.path is not None
    (parameter,) = re.findall(r"\{(\w+)\}", projection.path)
    kind = parameter.removesuffix("_id")
    schema = _add_model(spec, projection.document)
    summary = (projection.document.__doc__ or kind).strip().splitlines()[0].rstrip(".")
    read = Operation(
        f"Get{kind.capitalize()}",
        f"{summary}, from its read model",
        json_answer(schema, f"the {kind}"),
        [
            path_id(parameter, projection.id_schema),
            CONSISTENCY,
            {"name": "Prefer", "in": "header", "schema": {"type": "string"}},
        ],
        errors={"400": problem(BAD_CONSISTENCY), "404": problem(f"no such {kind}")},
    )
    _add_operation(spec, "get", projection.path, read)
