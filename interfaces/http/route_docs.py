"""Each operation's tag and description, taken from the route that serves it.

A route's docstring is its operation's description, so the text a reader of the code
sees is the text a reader of ``/openapi.json`` sees; an operation that carries its own
description (a command's, from its payload model) keeps it. Tags group operations by
the first segment of their path.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from flask import Flask

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
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            found[(method.lower(), path)] = doc
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
