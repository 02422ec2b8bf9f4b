"""Who is calling, and what they may do: API keys with scopes, from ``API_KEYS``.

With no key configured, authentication is off: every caller is ``anonymous`` with
every scope, and the settings only allow serving on a loopback address.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from flask import request

from infrastructure.settings import SCOPES, ApiKey
from interfaces.http.limits import limits
from interfaces.http.problems import Problem

ANONYMOUS = "anonymous"
ADMIN = "admin"
READ = "commands:read"
WRITE = "commands:write"


@dataclass(frozen=True)
class Caller:
    """An authenticated client and its scopes."""

    client: str
    scopes: frozenset[str]

    def may(self, scope: str) -> bool:
        """Whether the caller has ``scope``; ``admin`` has every scope."""
        return scope in self.scopes or ADMIN in self.scopes

    def sees(self, owner: str | None) -> bool:
        """Whether the caller may see what ``owner`` submitted: its own, or anything for
        an admin."""
        return owner == self.client or ADMIN in self.scopes


def authenticate(keys: Sequence[ApiKey], scope: str) -> Caller:
    """The caller, who must have ``scope``: a 401 :class:`Problem` for missing or bad
    credentials, a 403 for a key without the scope."""
    caller = _identify(keys)
    limits().admit(caller.client)
    if not caller.may(scope):
        raise Problem(
            403,
            "Forbidden",
            f"this key does not have the {scope} scope",
            kind="forbidden",
        )
    return caller


def _identify(keys: Sequence[ApiKey]) -> Caller:
    if not keys:
        return Caller(ANONYMOUS, frozenset(SCOPES))
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(
            401,
            "Unauthorized",
            "send Authorization: Bearer <API key>",
            kind="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="boxoffice"'},
        )
    digest = ApiKey.digest_of(token.strip())
    for key in keys:
        if hmac.compare_digest(key.digest, digest):
            return Caller(key.client, key.scopes)
    raise Problem(
        401,
        "Unauthorized",
        "the API key is not valid",
        kind="unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="boxoffice", error="invalid_token"'},
    )
