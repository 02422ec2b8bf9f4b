"""Reading a request body safely: bounded in size however it is sent, bounded in depth
before it is parsed, and JSON only."""

from __future__ import annotations

from functools import partial
from typing import Any, TypeVar

from flask import json, request
from pydantic import BaseModel, ValidationError

from interfaces.http.problems import Problem


def json_object(raw: bytes, errors: list[dict[str, str]]) -> dict[str, Any] | None:
    """The body as a JSON object, or None with the reason in ``errors``."""
    if not raw.strip():
        return {}
    if nesting_exceeds(raw, MAX_NESTING):
        message = f"nests deeper than {MAX_NESTING} levels"
        errors.append({"location": "body", "message": message, "type": "json_invalid"})
        return None
    repeated: list[str] = []
    try:
        body = json.loads(
            raw, parse_constant=_not_json, object_pairs_hook=partial(_unique_members, repeated)
        )
    except ValueError as error:
        errors.append({"location": "body", "message": str(error), "type": "json_invalid"})
        return None
    for name in dict.fromkeys(repeated):
        # Parsers disagree on which of two members wins: the client must say one thing.
        message = "appears more than once in its object"
        errors.append({"location": f"body.{name}", "message": message, "type": "duplicate_member"})
    if repeated:
        return None
    if not isinstance(body, dict):
        errors.append({"location": "body", "message": "the body must be a JSON object"})
        return None
    return body


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _unique_members(repeated: list[str], pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's members, noting in ``repeated`` each name given twice."""
    found: dict[str, Any] = {}
    for name, value in pairs:
        if name in found:
            repeated.append(name)
        found[name] = value
    return found


def read_body(limit: int) -> bytes:
    """The request body, refused with a 413 (closing the connection) past ``limit`` bytes,
    whether it comes with a Content-Length or chunked."""
    if request.content_length is not None:
        return request.get_data(cache=True)  # Flask refused one over the limit already
    if "wsgi.input_terminated" not in request.environ:
        return b""  # no length and a server that does not end the stream: no body
    stream = request.environ["wsgi.input"]
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(min(65536, limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
    return b"".join(chunks)


def too_large(limit: int) -> Problem:
    """The 413 for a body over ``limit`` bytes; the rest of it is not read, so the
    connection cannot carry another request and is closed."""
    return Problem(
        413,
        "Content too large",
        f"the body is larger than {limit} bytes",
        kind="content-too-large",
        headers={"Connection": "close"},
    )


# Deeper JSON is refused before it is parsed (a parser recursing 10,000 levels fails).
MAX_NESTING = 32


def nesting_exceeds(raw: bytes, limit: int) -> bool:
    """Whether the JSON text ``raw`` opens more than ``limit`` arrays or objects at once."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # cannot nest deeper than it opens
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


Model = TypeVar("Model", bound=BaseModel)


def model_body(model: type[Model], limit: int) -> Model:
    """The request's body (at most ``limit`` bytes; none is ``{}``) as ``model``, in
    pydantic's JSON mode (strict, yet a UUID is a string there); a 400 problem with
    every violation otherwise."""
    errors: list[dict[str, Any]] = []
    body = read_body(limit)
    if json_object(body, errors) is None:
        raise Problem(400, "Malformed JSON", kind="malformed-json", errors=errors)
    try:
        return model.model_validate_json(body if body.strip() else b"{}")
    except ValidationError as error:
        violations = [
            {
                "location": ".".join(["body", *(str(p) for p in e["loc"])]),
                "message": e["msg"],
            }
            for e in error.errors()
        ]
        raise Problem(400, "Invalid request", kind="validation-error", errors=violations) from None
