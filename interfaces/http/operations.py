"""``/projections`` and ``/health``: what operators and load balancers look at."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from interfaces.http.auth import ADMIN, authenticate
from interfaces.http.context import container
from interfaces.http.problems import Problem

operations = Blueprint("operations", __name__)

LAG_CAP = 10_000
DELIVERY_STATUSES = ("pending", "delivered", "parked")
WEBHOOK_PAGE = 500
# Tries in a row on one event after which /health calls a follower stalled (1 + 2 + 4 s).
STALLED_AFTER = 3


@operations.get("/projections")
def projections() -> Response:
    """Each read model's position, the log's head, and the events it has yet to apply.

    ``lag`` counts the pending events the view follows, up to 10 000 (then ``lag_capped``).
    """
    built = container()
    authenticate(built.settings.api_keys, ADMIN)
    read = built.read_models
    head = built.app.recorder.max_notification_id() or 0
    stalled = built.stalled()
    items = []
    for name in read.names:
        lag = read.pending(name, head, limit=LAG_CAP)
        items.append(
            {
                "name": name,
                "position": read.position(name),
                "head": head,
                "lag": lag,
                "lag_capped": lag >= LAG_CAP,
                "stalled": stalled.get(name),
            }
        )
    return jsonify({"items": items})


@operations.get("/webhooks")
def webhooks() -> Response:
    """Webhook deliveries, most recently changed first; ``?status=parked`` lists those
    given up on (their receiver kept failing), which are no longer tried."""
    built = container()
    authenticate(built.settings.api_keys, ADMIN)
    status = request.args.get("status")
    if status is not None and status not in DELIVERY_STATUSES:
        raise Problem(
            400,
            "Invalid query",
            kind="validation-error",
            errors=[
                {"location": "query.status", "message": f"one of {', '.join(DELIVERY_STATUSES)}"}
            ],
        )
    outbox = built.webhook_outbox()
    items = outbox.listed(status, WEBHOOK_PAGE) if outbox is not None else []
    return jsonify({"items": items})


@operations.get("/health")
def health() -> tuple[Response, int]:
    """Whether the event store and the broker can be reached."""
    built = container()
    event_store = _check(built.ping_event_store)
    broker = _check(built.ping_broker)
    reachable = event_store["reachable"] and broker["reachable"]
    stalled = []
    if event_store["reachable"]:
        stalled = [
            {"name": name, **row}
            for name, row in built.stalled().items()
            if row["attempts"] >= STALLED_AFTER
        ]
    body = {
        "status": "ok" if reachable and not stalled else "degraded",
        "event_store": event_store,
        "broker": broker,
        "stalled": stalled,
    }
    # 503 says "do not send me traffic": only for an unreachable dependency. A stalled
    # follower is degraded service that traffic does not make worse.
    return jsonify(body), 200 if reachable else 503


def _check(probe: Any) -> dict[str, Any]:
    try:
        probe()
    except Exception as error:  # noqa: BLE001 - any failure means unreachable here
        return {"reachable": False, "error": str(error) or type(error).__name__}
    return {"reachable": True}
