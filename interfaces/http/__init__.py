"""The Flask app: commands in, status and resources out, errors as problem+json."""

from __future__ import annotations

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from infrastructure.event_store import STORE_UNAVAILABLE
from interfaces.bootstrap import Container
from interfaces.http.admin import admin
from interfaces.http.commands import commands
from interfaces.http.console import console
from interfaces.http.documents import document_endpoints
from interfaces.http.limits import Limits
from interfaces.http.openapi import openapi
from interfaces.http.problems import Problem, kebab
from interfaces.http.status import status
from interfaces.http.submit import command_endpoints
from projections.views import PROJECTIONS

# Problem kinds of the HTTP errors Flask raises itself.
HTTP_KINDS = {
    400: "validation-error",
    404: "not-found",
    405: "method-not-allowed",
    413: "content-too-large",
    415: "unsupported-media-type",
}


def create_app(container: Container) -> Flask:
    """The WSGI app over ``container``: a blueprint per resource, the command and
    document endpoints generated from the registry and the projections."""
    app = Flask("boxoffice")
    app.extensions["boxoffice"] = container
    app.extensions["boxoffice-limits"] = Limits(
        rate=container.settings.rate_limit_per_second,
        burst=container.settings.rate_limit_burst,
        streams=container.settings.streams_per_client,
        refused=container.metrics.limited,
    )
    app.config["MAX_CONTENT_LENGTH"] = container.settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.register_blueprint(command_endpoints(container.catalog))
    app.register_blueprint(commands)
    app.register_blueprint(document_endpoints(PROJECTIONS))
    app.register_blueprint(status)
    app.register_blueprint(admin)
    app.register_blueprint(openapi)
    app.register_blueprint(console)  # browser pages: not in the API's OpenAPI document

    @app.errorhandler(Problem)
    def problem(error: Problem) -> Response:
        return error.response()

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        headers = dict(error.get_headers())
        headers.pop("Content-Type", None)
        kind = HTTP_KINDS.get(status, kebab(type(error).__name__))
        if status == 413:
            headers["Connection"] = "close"  # the rest of the body was not read
        return Problem(status, error.name, error.description, kind=kind, headers=headers).response()

    @app.after_request
    def vary_with_prefer(response: Response) -> Response:
        # These answers depend on Prefer (wait): caches must key on it.
        if request.blueprint in ("submit", "documents") or request.endpoint == "commands.command":
            response.vary.add("Prefer")
        return response

    def store_unavailable(error: Exception) -> Response:
        app.logger.warning("event store unavailable: %s", error)
        return Problem(
            503,
            "Service unavailable",
            # For a command: retrying with the same Idempotency-Key is safe, whether
            # or not the acceptance was recorded before the store went away.
            "the event store cannot be reached; try again shortly",
            kind="store-unavailable",
            headers={"Retry-After": "5"},
        ).response()

    for unavailable in STORE_UNAVAILABLE:
        app.register_error_handler(unavailable, store_unavailable)

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        app.logger.exception("unhandled error", exc_info=error)
        return Problem(500, "Internal server error", "an unexpected error was logged").response()

    return app
