"""Each fixed route's OpenAPI operation, declared beside the route with :func:`documented`.

A route's docstring is its operation's description, so the text a reader of the code
sees is the text a reader of ``/openapi.json`` sees; an operation that carries its own
description (a command's, from its payload model) keeps it. Tags group operations by
the first segment of their path. :mod:`interfaces.http.openapi` gathers the operations
from the app's routes.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Flask
from pydantic import BaseModel

from application.payloads import RFC3339
from interfaces.arguments import COMMAND_TYPE, RESOURCE, STATUSES

# The tags, in the order a reader meets them, and what each groups.
TAGS: dict[str, str] = {
    "shows": "Shows: the catalogue, created and cancelled by commands",
    "reservations": "Reservations: placed and cancelled by commands, each run by a saga",
    "sagas": "The reservation sagas' states and timelines",
    "commands": "The command registry: every command's status, history and events",
    "service": "The service itself: health, read models, webhooks, problem types",
    "admin": "The operator's tools (scope admin): dead letters, sagas, projections",
}
# Paths whose first segment names no tag of its own.
SERVICE = "service"

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
ARRAY: dict[str, Any] = {"type": "array", "items": {"type": "object"}}
OBJECT: dict[str, Any] = {"type": "object"}
ID: dict[str, Any] = {"type": "string", "format": "uuid"}
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


def problem(description: str, **headers: str) -> dict[str, Any]:
    """A problem+json answer, with these headers (name → JSON type)."""
    response: dict[str, Any] = {"description": description, "content": PROBLEM}
    if headers:
        response["headers"] = {n: {"schema": {"type": t}} for n, t in headers.items()}
    return response


def json_answer(schema: str, description: str) -> dict[str, Any]:
    """A JSON answer of the component schema ``schema``."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def object_answer(description: str, **properties: dict[str, Any]) -> dict[str, Any]:
    """A JSON object answer whose ``properties`` are always there."""
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def path_id(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A path parameter."""
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


def query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    """An optional query parameter."""
    return {"name": name, "in": "query", "schema": schema, "description": description}


# The filters of arguments.command_query, as /commands and /admin/commands take them.
COMMAND_FILTERS = (
    query("status", {"enum": list(STATUSES)}),
    query("type", {"type": "string", "pattern": COMMAND_TYPE.pattern}),
    query("aggregate_id", ID),
    query("correlation_id", ID),
    query("resource", RESOURCE_SCHEMA, "a resource path (/shows/s1) or a client's id (s1)"),
    query("since", TIME_SCHEMA, "submitted from"),
    query("until", TIME_SCHEMA, "submitted before"),
)

COMMON_ERRORS = {
    "401": problem("missing or bad credentials", **{"WWW-Authenticate": "string"}),
    "403": problem("the API key does not have the scope this needs"),
    "429": problem("too many requests or streams for this API key", **{"Retry-After": "string"}),
    "503": problem("the event store cannot be reached", **{"Retry-After": "string"}),
}


@dataclass(frozen=True)
class Operation:
    """A route's OpenAPI operation: its 200 (``ok``), its own errors by status, its
    parameters and request body; ``public`` ones need no key and answer none of the
    common errors (401, 403, 429, 503)."""

    operation_id: str
    summary: str
    ok: dict[str, Any]
    parameters: Sequence[dict[str, Any]] = ()
    body: type[BaseModel] | None = None
    public: bool = False
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)

    def render(self, body_schema: str | None) -> dict[str, Any]:
        """The operation object; ``body_schema`` names the body's component schema."""
        responses = {"200": self.ok, **self.errors}
        operation: dict[str, Any] = {
            "operationId": self.operation_id,
            "summary": self.summary,
            "parameters": list(self.parameters),
        }
        if self.public:
            operation["security"] = [{}]
        else:
            responses.update(COMMON_ERRORS)
        if body_schema is not None:
            operation["requestBody"] = {
                "required": False,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{body_schema}"}}
                },
            }
            responses["400"] = problem("malformed JSON, or a bad field")
            responses["413"] = problem("body too large")
        operation["responses"] = responses
        return operation


View = TypeVar("View", bound=Callable[..., Any])


def documented(
    operation_id: str,
    summary: str,
    ok: dict[str, Any],
    parameters: Sequence[dict[str, Any]] = (),
    body: type[BaseModel] | None = None,
    public: bool = False,
    answers: dict[str, dict[str, Any]] | None = None,
    **errors: str,
) -> Callable[[View], View]:
    """Declare the OpenAPI operation of the route below: ``_404="no such saga"`` gives
    a problem answer per status, ``answers`` any other answer as it is."""
    problems = {status.lstrip("_"): problem(text) for status, text in errors.items()}
    operation = Operation(
        operation_id, summary, ok, parameters, body, public, {**problems, **(answers or {})}
    )

    def mark(view: View) -> View:
        view.openapi = operation  # type: ignore[attr-defined]
        return view

    return mark


def documented_routes(app: Flask) -> Iterator[tuple[str, str, Operation]]:
    """Each documented route of ``app``: method, OpenAPI path template, operation."""
    for rule in app.url_map.iter_rules():
        operation = getattr(app.view_functions.get(rule.endpoint), "openapi", None)
        if not isinstance(operation, Operation):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield method.lower(), openapi_path(rule.rule), operation


def openapi_path(rule: str) -> str:
    """A Flask rule (``/sagas/<saga>``) as an OpenAPI path template (``/sagas/{saga}``)."""
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def tag_of(path: str) -> str:
    """The tag of the operation at ``path``."""
    first = path.strip("/").split("/", 1)[0]
    return first if first in TAGS else SERVICE


def route_docstrings(app: Flask) -> dict[tuple[str, str], str]:
    """Each route's docstring by (method, OpenAPI path template)."""
    found: dict[tuple[str, str], str] = {}
    for rule in app.url_map.iter_rules():
        doc = inspect.getdoc(app.view_functions.get(rule.endpoint))
        if not doc:
            continue
        for method in rule.methods or ():
            found[(method.lower(), openapi_path(rule.rule))] = doc
    return found


def describe(document: dict[str, Any], app: Flask) -> None:
    """Give every operation of ``document`` its tag, and a description from its route
    where it has none; list the tags used."""
    docstrings = route_docstrings(app)
    used: set[str] = set()
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            tag = tag_of(path)
            operation.setdefault("tags", [tag])
            used.add(tag)
            if not operation.get("description"):
                text = docstrings.get((method, path)) or operation.get("summary", "")
                operation["description"] = text
    document["tags"] = [{"name": n, "description": d} for n, d in TAGS.items() if n in used]
