"""What a request handler reads from the request beyond its route: the service, and
the client's preferences."""

from __future__ import annotations

import re

from flask import current_app, request

from interfaces.bootstrap import Container

PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def container() -> Container:
    """The container of the app serving this request."""
    built: Container = current_app.extensions["boxoffice"]
    return built


def prefer_wait(limit: float) -> float | None:
    """The seconds asked for with ``Prefer: wait=N`` (RFC 7240), capped at ``limit``."""
    prefer = ",".join(request.headers.getlist("Prefer"))
    match = PREFER_WAIT.search(prefer)
    if match is None:
        return None
    return min(float(match.group(1)), limit)
