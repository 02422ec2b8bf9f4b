"""The operator's console at ``/console``: server-rendered HTML, updated by an event
stream, for the ``admin`` scope.

A browser cannot send an ``Authorization`` header when it opens a page or an event
stream, so the console signs in once with an admin API key (a form) and keeps the key
in a cookie that only this path gets (``HttpOnly``, ``SameSite=Strict``, ``Secure``
over HTTPS). A re-drive is a ``POST`` that must carry the console's own header, which a
page of another site cannot send without this service's consent (CORS).
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from flask import Blueprint, Response, redirect, render_template, request, stream_with_context
from werkzeug.wrappers import Response as WerkzeugResponse

from application.operations import NotFoundError
from application.operations import commands as command_ops
from application.operations import sagas as saga_ops
from infrastructure.settings import ApiKey
from interfaces.http import console_data
from interfaces.http.auth import ADMIN, ANONYMOUS, Caller
from interfaces.http.context import container
from interfaces.http.limits import limits

console = Blueprint(
    "console",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/console/static",
)
COOKIE = "boxoffice_console"
# The header a re-drive must carry (a cross-site form cannot set it).
CONSOLE_HEADER = "X-Boxoffice-Console"
# How often the event stream sends a new snapshot, and how long one stream lasts (the
# browser reconnects on its own, which frees the server's thread meanwhile).
TICK_SECONDS = 2.0
STREAM_SECONDS = 300.0


def _signed_in() -> Caller | None:
    """The admin the console's cookie names; None when it names none (or no admin)."""
    keys = container().settings.api_keys
    if not keys:
        return Caller(ANONYMOUS, frozenset({ADMIN}))
    token = request.cookies.get(COOKIE, "")
    if not token:
        return None
    digest = ApiKey.digest_of(token)
    for key in keys:
        if hmac.compare_digest(key.digest, digest):
            caller = Caller(key.client, key.scopes)
            return caller if ADMIN in caller.scopes else None
    return None


@console.get("/console")
def page() -> Response | str:
    """The console, or the form that signs in to it. ``?q=`` searches commands (by id,
    correlation id or resource), ``?command=`` draws one's waterfall, ``?saga=`` shows
    a saga's timeline."""
    caller = _signed_in()
    if caller is None:
        return Response(render_template("login.html", error=None), 200)
    limits().admit(caller.client)
    operator = container().operator
    query = request.args.get("q", "").strip()[:200]
    chosen = _uuid(request.args.get("command"))
    saga_id = _uuid(request.args.get("saga"))
    saga = None
    if saga_id is not None:
        try:
            saga = saga_ops.saga_detail(operator, saga_id)
        except NotFoundError:
            saga = None
    return render_template(
        "console.html",
        caller=caller,
        data=console_data.snapshot(operator),
        query=query,
        found=console_data.search(operator, query) if query else None,
        chosen=chosen,
        bars=console_data.waterfall(operator, chosen) if chosen else None,
        saga_id=saga_id,
        saga=saga,
    )


@console.post("/console/login")
def login() -> WerkzeugResponse:
    """Sign in with an admin API key (a form field ``key``)."""
    key = request.form.get("key", "").strip()
    keys = container().settings.api_keys
    digest = ApiKey.digest_of(key)
    admin = any(hmac.compare_digest(k.digest, digest) and ADMIN in k.scopes for k in keys)
    if not admin:
        return Response(render_template("login.html", error="not an admin API key"), 401)
    answer = redirect("/console", 303)
    answer.set_cookie(
        COOKIE,
        key,
        path="/console",
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
    )
    return answer


@console.post("/console/logout")
def logout() -> WerkzeugResponse:
    """Sign out: the cookie is cleared."""
    answer = redirect("/console", 303)
    answer.delete_cookie(COOKIE, path="/console")
    return answer


@console.get("/console/events")
def events() -> Response:
    """A snapshot every :data:`TICK_SECONDS` (``event: snapshot``), as server-sent events."""
    caller = _signed_in()
    if caller is None:
        return Response("sign in at /console", 401, content_type="text/plain")
    release = limits().open_stream(caller.client)
    operator = container().operator

    def stream() -> Iterator[str]:
        try:
            until = time.monotonic() + STREAM_SECONDS
            while time.monotonic() < until:
                try:
                    data = json.dumps(console_data.snapshot(operator), default=str)
                except Exception as error:  # noqa: BLE001 - the page says so and goes on
                    yield f"event: unavailable\ndata: {json.dumps(str(error))}\n\n"
                else:
                    yield f"event: snapshot\ndata: {data}\n\n"
                time.sleep(TICK_SECONDS)
        finally:
            release()

    return Response(
        stream_with_context(stream()),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@console.post("/console/redrive/<command_id>")
def redrive(command_id: str) -> tuple[Response, int]:
    """Re-drive one dead letter: the JSON result of ``deadletters redrive``."""
    caller = _signed_in()
    if caller is None:
        return _json({"error": "sign in at /console"}), 401
    if request.headers.get(CONSOLE_HEADER) != "1":
        return _json({"error": f"send {CONSOLE_HEADER}: 1"}), 403
    key = _uuid(command_id)
    if key is None:
        return _json({"error": "not a command id"}), 400
    (result,) = command_ops.redrive(
        container().operator, [key], None, False, caller.client, "re-driven from the console"
    )
    return _json(result), 200 if result["result"] == "redriven" else 409


def _json(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), content_type="application/json")


def _uuid(text: str | None) -> UUID | None:
    if not text:
        return None
    try:
        return UUID(text.strip())
    except ValueError:
        return None
