"""RFC 9457 problem details: every error the API answers is one of these, and each
problem type's URI, ``/problems/<kind>``, answers a page that explains it."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Response, json, request

from application.operations import NotFoundError, RefusedError
from domain.errors import DomainError
from interfaces import arguments

PROBLEM_JSON = "application/problem+json"

# What each problem type means and what to do about it, by kind (its URI's last part).
# Commands that fail answer (with Prefer: wait) a type named after their domain error;
# those are explained by the error's own docstring (see problem_types()).
PROBLEM_TYPES: dict[str, str] = {
    "validation-error": "The request breaks the published schema: a field, header, query "
    "parameter or path parameter is missing, of the wrong type, out of range or unknown. "
    "Every violation is listed in errors, each with its location; fix them all and send "
    "the request again.",
    "malformed-json": "The body is not valid JSON, or nests deeper than the service reads. "
    "Send one JSON object.",
    "unauthorized": "The request has no API key, or one the service does not know. Send "
    "Authorization: Bearer <API key>.",
    "forbidden": "The API key is valid but lacks the scope this request needs "
    "(commands:write to submit commands, commands:read to read, admin for operations).",
    "not-found": "There is nothing here for this client: it does not exist, or another "
    "client owns it. The two are answered alike so that ids do not leak.",
    "gone": "The command is older than the retention window; its registry entry is no "
    "longer served.",
    "method-not-allowed": "The resource exists but does not answer this method; Allow lists "
    "those it does.",
    "unsupported-media-type": "Commands are sent as application/json.",
    "content-too-large": "The body is larger than the service accepts (MAX_BODY_BYTES). The "
    "connection is closed after this answer.",
    "idempotency-key-reused": "This Idempotency-Key was already used, by this client, for a "
    "different command. Use a new key for a new command; repeat a request only unchanged.",
    "resource-exists": "The id the command would create is taken. Ids are chosen by clients; "
    "choose another (a UUID never collides).",
    "too-many-requests": "This API key sent more requests, or holds more event streams, than "
    "the service allows; Retry-After says when to try again.",
    "not-caught-up": "The read model has not yet reached the Consistency-Token sent; "
    "Retry-After says when to try again. Nothing stale was served.",
    "store-unavailable": "The event store cannot be reached. Nothing was done; retrying with "
    "the same Idempotency-Key is safe.",
    "backlog-full": "More commands are waiting than the workers can decide within "
    "MAX_BACKLOG_SECONDS at the rate they decide them now. Nothing was accepted; send the "
    "same request (same Idempotency-Key) again after Retry-After seconds, the time the "
    "backlog needs to fall back under the limit. Reads are never refused this way.",
    "dead-lettered": "Every attempt of the command failed with a technical error; it waits "
    "for an operator to re-drive it. Its registry entry has the errors.",
    "command-failed": "The command was refused by a business rule; detail says which.",
    "refused": "The operation does not apply to what it was asked of (a finished saga has "
    "no step to retry, a live view behind the rebuilt one cannot be swapped); detail says "
    "why.",
    "internal-server-error": "Something unexpected went wrong; it was logged. Nothing the "
    "client sent caused a partial change.",
}


def query_flag(name: str) -> bool:
    """The query's ``name=true`` or ``name=false`` (false when absent); a 400
    :class:`Problem` naming it for any other value."""
    raw = request.args.get(name, "false")
    if raw not in ("true", "false"):
        raise Problem(
            400,
            "Invalid query",
            kind="validation-error",
            errors=[{"location": f"query.{name}", "message": "true or false"}],
        )
    return raw == "true"


def kebab(name: str) -> str:
    """``ShowCancelledError`` → ``show-cancelled``: the problem kind of a domain error."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name.removesuffix("Error")).lower()


def problem_types() -> dict[str, str]:
    """Every problem kind the API answers, with its explanation."""
    types = dict(PROBLEM_TYPES)
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        error = pending.pop()
        pending.extend(error.__subclasses__())
        types.setdefault(kebab(error.__name__), " ".join((error.__doc__ or "").split()))
    return types


class Problem(Exception):  # noqa: N818 - an answer to send, not a fault
    """An error answer; raise it anywhere in a request and the app renders it."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        kind: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        instance: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        if detail is None and errors:
            count = len(errors)
            detail = f"{count} violation{'s' if count > 1 else ''}: see errors"
        self.detail = detail
        self.kind = kind or title.lower().replace(" ", "-")
        self.errors = errors
        self.headers = headers or {}
        self.instance = instance
        self.extra = extra

    def response(self) -> Response:
        """This problem as an ``application/problem+json`` response."""
        body: dict[str, Any] = {
            "type": f"/problems/{self.kind}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail or self.title,
            "instance": self.instance or request.path,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        response = Response(json.dumps(body), status=self.status, mimetype=PROBLEM_JSON)
        response.headers.update(self.headers)
        return response


def explanation_page(kind: str, text: str) -> str:
    """The HTML page a problem type's URI answers."""
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        f"<title>{html.escape(kind)}</title><h1>/problems/{html.escape(kind)}</h1>"
        f"<p>{html.escape(text)}</p></html>"
    )


@contextmanager
def operation_problems() -> Iterator[None]:
    """The operator's use cases' errors as problems: bad arguments 400 with every
    violation, not found 404, refused 409."""
    try:
        yield
    except arguments.BadArgumentsError as bad:
        raise Problem(400, "Invalid request", kind="validation-error", errors=bad.errors) from None
    except NotFoundError as missing:
        raise Problem(404, "Not found", str(missing)) from None
    except RefusedError as refused:
        raise Problem(409, "Refused", str(refused), kind="refused") from None
