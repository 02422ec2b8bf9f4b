"""What a request handler reads from the request beyond its route: the service, and
the client's preferences."""

from __future__ import annotations

import re

from flask import current_app, request

from interfaces.bootstrap import Container

# RFC 7240 gives wait in whole seconds; fractions are accepted too.
WAIT_SECONDS = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?")
# One element of a comma- or semicolon-separated list, quoted strings kept whole.
ELEMENT = re.compile(r'(?:"(?:[^"\\]|\\.)*"|[^,;"])+|(?P<sep>[,;])')


def container() -> Container:
    """The container of the app serving this request."""
    built: Container = current_app.extensions["boxoffice"]
    return built


def preferences() -> dict[str, str | None]:
    """The request's preferences (RFC 7240) by lower-case name, with their values
    (quotes removed) and without their parameters; the first of a name counts."""
    found: dict[str, str | None] = {}
    for header in request.headers.getlist("Prefer"):
        first_of_preference = True
        for match in ELEMENT.finditer(header):
            if match.group("sep") is not None:
                first_of_preference = match.group("sep") == ","
                continue
            if not first_of_preference:
                continue  # a parameter of the preference before it
            name, equals, value = match.group().partition("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            found.setdefault(name.strip().lower(), value if equals else None)
    return found


def prefer_wait(limit: float) -> float | None:
    """The seconds asked for with ``Prefer: wait=N``, capped at ``limit``; None when there
    is no such preference or its value is not a number of seconds (it is then ignored)."""
    value = preferences().get("wait")
    if value is None or not WAIT_SECONDS.fullmatch(value):
        return None
    return min(float(value), limit)
