"""The command endpoints, one per registered command that has an :class:`Endpoint`,
and the path they share: parse, validate, accept, answer."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from flask import Blueprint, Response, json, request
from pydantic import ValidationError

from application.admission import Admitted
from application.catalog import CommandCatalog, CommandSpec
from application.command import Command
from application.payloads import pattern_message
from application.submission import (
    Acceptance,
    IdempotencyKeyReusedError,
    ResourceExistsError,
    Submission,
)
from interfaces.bootstrap import Container
from interfaces.http.auth import WRITE, authenticate
from interfaces.http.bodies import json_object, read_body
from interfaces.http.context import container, prefer_wait
from interfaces.http.problems import Problem, kebab
from projections.command_registry import command_links, present_command
from projections.views import present

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def flask_rule(path: str) -> str:
    """An endpoint's path template (``{name}``) as a Flask rule (``<name>``)."""
    return re.sub(r"\{(\w+)\}", r"<\1>", path)


def command_endpoints(catalog: CommandCatalog) -> Blueprint:
    """A blueprint serving every command of ``catalog`` that clients may submit."""
    blueprint = Blueprint("submit", __name__)
    for spec in catalog:
        if spec.endpoint is not None:
            blueprint.add_url_rule(
                flask_rule(spec.endpoint.path),
                endpoint=spec.name,
                view_func=partial(submit, spec.name),
                methods=[spec.endpoint.method],
            )
    return blueprint


def submit(command_type: str, **path: str) -> Response:
    """Accept ``command_type`` with this request's body and ``path`` parameters."""
    built = container()
    caller = authenticate(built.settings.api_keys, WRITE)
    spec = built.catalog.get(command_type)
    errors: list[dict[str, str]] = []
    key = _idempotency_key(errors)
    callback = _callback_url(built, errors)
    payload = _payload(spec, path, built.settings.max_body_bytes, errors)
    if errors:
        malformed = any(e["location"] == "body" and e.get("type") == "json_invalid" for e in errors)
        raise Problem(
            400,
            "Malformed JSON" if malformed else "Invalid command",
            kind="malformed-json" if malformed else "validation-error",
            errors=errors,
        )
    wait = prefer_wait(built.settings.max_wait_seconds)
    admitted = _admitted(built, caller.client, key)
    submission = Submission(
        spec=spec,
        payload=payload,
        submitted_by=caller.client,
        idempotency_key=key,
        callback_url=callback,
    )
    acceptance = _accept(built, submission)
    if wait is not None:
        return _answer_after_wait(built, spec, acceptance, wait)
    return _accepted(acceptance, admitted.retry_after, warn=key is None)


def _admitted(built: Container, client: str, key: str | None) -> Admitted:
    """Admission control's answer for ``client``'s command ``key``; a 503
    :class:`Problem` with ``Retry-After`` while the backlog holds more work than
    ``MAX_BACKLOG_SECONDS`` (the room kept for the command then, if it has a key)."""
    decision = built.admission.decide(client, key)
    if isinstance(decision, Admitted):
        return decision
    built.metrics.limited("backlog")
    raise Problem(
        503,
        "Backlog full",
        f"{decision.waiting} commands are waiting and {decision.rate:.1f} a second are "
        f"decided: more than {decision.limit_seconds:g} s of work. Nothing was accepted; "
        f"send the same request again in {decision.retry_after} s.",
        kind="backlog-full",
        headers={"Retry-After": str(decision.retry_after)},
        waiting=decision.waiting,
        drain_per_second=round(decision.rate, 1),
    )


def _accept(built: Container, submission: Submission) -> Acceptance:
    """Accept ``submission``; its refusals as problems."""
    try:
        return built.pipeline.accept(submission)
    except IdempotencyKeyReusedError:
        raise Problem(
            422,
            "Idempotency key reused",
            "this Idempotency-Key was already used for a different command",
            kind="idempotency-key-reused",
        ) from None
    except ResourceExistsError as error:
        raise Problem(409, "Conflict", f"{error} already exists", kind="resource-exists") from None


def _payload(
    spec: CommandSpec[Any], path: dict[str, str], limit: int, errors: list[dict[str, str]]
) -> Any:
    raw = read_body(limit)
    if raw.strip() and request.mimetype != "application/json":
        raise Problem(
            415,
            "Unsupported media type",
            "send the command as application/json",
            headers={"Accept-Post": "application/json"},
        )
    body = json_object(raw, errors)
    if body is None:
        return None
    errors.extend(
        {"location": f"body.{name}", "message": "is given by the path; leave it out of the body"}
        for name in path
        if name in body
    )
    try:
        return spec.payload.model_validate({**body, **path})
    except ValidationError as invalid:
        errors.extend(
            {
                "location": _location(error["loc"], path),
                "message": _message(error),
                "type": error["type"],
            }
            for error in invalid.errors(include_url=False)
        )
    return None


def _message(error: Any) -> str:
    """Pydantic's message, in words where it would quote a regular expression."""
    if error["type"] == "string_pattern_mismatch":
        worded = pattern_message(error.get("ctx", {}).get("pattern", ""))
        if worded is not None:
            return worded
    return str(error["msg"])


def _location(loc: tuple[int | str, ...], path: dict[str, str]) -> str:
    where = "path" if loc and loc[0] in path else "body"
    return where + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def _idempotency_key(errors: list[dict[str, str]]) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        message = "must be 1 to 255 visible ASCII characters"
        errors.append({"location": "header.Idempotency-Key", "message": message})
        return None
    return key


def _callback_url(built: Container, errors: list[dict[str, str]]) -> str | None:
    url = request.headers.get("Callback-Url")
    if url is None:
        return None
    refusal = built.callback_policy.refusal(url)
    if refusal is None:
        return url
    errors.append({"location": "header.Callback-Url", "message": refusal})
    return None


def _accepted(acceptance: Acceptance, retry_after: int, *, warn: bool) -> Response:
    """The 202, with ``Retry-After`` the seconds to the command's expected outcome."""
    command = acceptance.command
    body: dict[str, Any] = {
        "command_id": str(command.id),
        "status": command.status,
        "links": command_links(command),
    }
    if acceptance.position is not None:
        body["position"] = acceptance.position
    if warn:
        body["warnings"] = [
            "no Idempotency-Key header: the server assigned the command id, so "
            "retrying this request may run the command twice"
        ]
    response = Response(json.dumps(body), status=202, mimetype="application/json")
    response.headers["Location"] = f"/commands/{command.id}"
    response.headers["Retry-After"] = str(retry_after)
    return response


def _answer_after_wait(
    built: Container, spec: CommandSpec[Any], acceptance: Acceptance, wait: float
) -> Response:
    watched = built.watcher.await_outcome(built.pipeline, acceptance.command, wait)
    command = watched.command
    applied = {"Preference-Applied": f"wait={_format_seconds(wait)}"}
    if not command.is_terminal:
        response = _accepted(
            acceptance,
            built.admission.expected_seconds(),
            warn=acceptance.command.idempotency_key is None,
        )
        response.headers.update(applied)
        return response
    if command.status == "succeeded":
        status = 201 if spec.creates else 200
        body = present_command(command)
        token = watched.position if watched.position is not None else built.position_of(command.id)
        body["consistency_token"] = str(token) if token is not None else None
        resource = present(built.app.repository.get(command.aggregate_id))
        if resource is not None:
            body["resource"] = resource
        response = Response(json.dumps(body), status=status, mimetype="application/json")
        response.headers.update(applied)
        response.headers["Content-Location"] = f"/commands/{command.id}"
        if spec.creates:
            response.headers["Location"] = command.resource
        return response
    raise _outcome_problem(command, applied)


def _outcome_problem(command: Command, headers: dict[str, str]) -> Problem:
    error = command.error or {}
    links = command_links(command)
    if command.status == "failed":
        status = {"conflict": 409, "not_found": 404}.get(error.get("category", ""), 422)
        return Problem(
            status,
            "Command failed",
            error.get("message"),
            kind=kebab(error["type"]) if "type" in error else "command-failed",
            headers=headers,
            command_id=str(command.id),
            links=links,
        )
    return Problem(
        503,
        "Command dead-lettered",
        "every attempt failed with a technical error; the command can be re-driven",
        kind="dead-lettered",
        headers=headers,
        command_id=str(command.id),
        links=links,
    )


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if seconds == int(seconds) else str(seconds)
