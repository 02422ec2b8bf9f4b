"""The HTTP resources: commands, shows, health."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from flask import Blueprint, Response, jsonify

from application.commands import present_show
from domain.show import Show
from interfaces.http.auth import authenticate
from interfaces.http.presenters import present_command
from interfaces.http.problems import Problem
from interfaces.http.submit import container, submit

api = Blueprint("api", __name__)


@api.put("/shows/<show_id>")
def create_show(show_id: str) -> Response:
    """CreateShow."""
    return submit("CreateShow", show_id=show_id)


@api.post("/shows/<show_id>/cancel")
def cancel_show(show_id: str) -> Response:
    """CancelShow."""
    return submit("CancelShow", show_id=show_id)


@api.get("/shows/<show_id>")
def get_show(show_id: str) -> Response:
    """The show as it stands now."""
    built = container()
    authenticate(built.settings.api_tokens)
    try:
        show: object = built.app.repository.get(Show.create_id(show_id))
    except AggregateNotFoundError:
        raise Problem(404, "Not found", f"no show {show_id}") from None
    if not isinstance(show, Show):
        raise Problem(404, "Not found", f"no show {show_id}")
    return jsonify(present_show(show))


@api.get("/commands/<command_id>")
def get_command(command_id: str) -> Response:
    """A command's status document; 404 for an id that was never accepted."""
    built = container()
    authenticate(built.settings.api_tokens)
    try:
        key = UUID(command_id)
    except ValueError:
        raise Problem(404, "Not found", f"no command {command_id}") from None
    command = built.pipeline.get_command(key)
    if command is None:
        raise Problem(404, "Not found", f"no command {command_id}")
    return jsonify(present_command(command))


@api.get("/health")
def health() -> tuple[Response, int]:
    """Whether the event store and the broker can be reached."""
    built = container()
    event_store = _check(built.ping_event_store)
    broker = _check(built.ping_broker)
    healthy = event_store["reachable"] and broker["reachable"]
    body = {
        "status": "ok" if healthy else "degraded",
        "event_store": event_store,
        "broker": broker,
    }
    return jsonify(body), 200 if healthy else 503


def _check(probe: Any) -> dict[str, Any]:
    try:
        probe()
    except Exception as error:  # noqa: BLE001 - any failure means unreachable here
        return {"reachable": False, "error": str(error) or type(error).__name__}
    return {"reachable": True}
