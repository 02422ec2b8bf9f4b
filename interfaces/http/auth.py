"""Who is calling: bearer tokens from ``API_TOKENS``, or anyone when none are configured."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from flask import request

from interfaces.http.problems import Problem

ANONYMOUS = "anonymous"


def authenticate(tokens: Mapping[str, str]) -> str:
    """The calling client's name; raises a 401 :class:`Problem` for bad credentials."""
    if not tokens:
        return ANONYMOUS
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Problem(
            401,
            "Unauthorized",
            "send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="boxoffice"'},
        )
    for known, client in tokens.items():
        if hmac.compare_digest(known.encode(), token.strip().encode()):
            return client
    raise Problem(
        401,
        "Unauthorized",
        "the bearer token is not valid",
        headers={"WWW-Authenticate": 'Bearer realm="boxoffice", error="invalid_token"'},
    )


def require_writer(client: str, readers: frozenset[str]) -> None:
    """Raise a 403 :class:`Problem` when ``client`` may only read."""
    if client in readers:
        raise Problem(403, "Forbidden", f"client {client} may read but not submit commands")
