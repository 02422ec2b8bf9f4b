"""``/projections``, ``/webhooks`` and ``/health``: what operators and load balancers
look at."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from application.operations import views as view_ops
from infrastructure import metrics
from interfaces.http.auth import ADMIN, authenticate
from interfaces.http.context import container
from interfaces.http.problems import Problem
from interfaces.http.route_docs import documented, json_answer, query
from projections.command_registry import CommandRegistryProjection
from projections.sagas import SagasProjection, stuck_sagas

status = Blueprint("status", __name__)

DELIVERY_STATUSES = ("pending", "delivered", "parked")
WEBHOOK_PAGE = 500
# Tries in a row on one event after which /health calls a follower stalled (1 + 2 + 4 s).
STALLED_AFTER = 3
# The longest sample /projections takes to measure events/s.
MAX_SAMPLE_SECONDS = 5.0


@status.get("/projections")
@documented(
    "ListProjections",
    "Read models' positions, lag and stalls; with sample, their events/s (admin)",
    json_answer("ProjectionList", "positions"),
    [query("sample", {"type": "number", "minimum": 0.1, "maximum": 5}, "seconds to measure")],
    _400="bad sample",
)
def projections() -> Response:
    """Each read model's position, the log's head, and the events it has yet to apply.

    ``lag`` counts the pending events the view follows, up to 10 000 (then
    ``lag_capped``), and ``lag_seconds`` is the age of the oldest of them; ``stalled``
    is the event it cannot get past, if any. With ``sample`` (0.1 to 5 s),
    ``events_per_s`` is how many it applied per second over that time.
    """
    built = container()
    authenticate(built.settings.api_keys, ADMIN)
    raw = request.args.get("sample")
    sample = None
    if raw is not None:
        try:
            sample = float(raw)
        except ValueError:
            sample = -1.0
        if not 0.1 <= sample <= MAX_SAMPLE_SECONDS:
            raise Problem(
                400,
                "Invalid query",
                kind="validation-error",
                errors=[{"location": "query.sample", "message": "seconds from 0.1 to 5"}],
            )
    return jsonify({"items": view_ops.projections_status(built.operator, sample)})


@status.get("/webhooks")
@documented(
    "ListWebhooks",
    "Webhook deliveries; status=parked lists those given up on (admin)",
    json_answer("WebhookList", "deliveries"),
    [{"name": "status", "in": "query", "schema": {"enum": list(DELIVERY_STATUSES)}}],
    _400="bad status",
)
def webhooks() -> Response:
    """Webhook deliveries, most recently changed first; ``?status=parked`` lists those
    given up on (their receiver kept failing), which are no longer tried."""
    built = container()
    authenticate(built.settings.api_keys, ADMIN)
    chosen = request.args.get("status")
    if chosen is not None and chosen not in DELIVERY_STATUSES:
        raise Problem(
            400,
            "Invalid query",
            kind="validation-error",
            errors=[
                {"location": "query.status", "message": f"one of {', '.join(DELIVERY_STATUSES)}"}
            ],
        )
    outbox = built.webhook_outbox()
    items = outbox.listed(chosen, WEBHOOK_PAGE) if outbox is not None else []
    return jsonify({"items": items})


@status.get("/metrics")
@documented(
    "Metrics",
    "Prometheus metrics of this host's web processes, and each view's lag (admin)",
    {
        "description": "Prometheus' text format",
        "content": {metrics.CONTENT_TYPE: {"schema": {"type": "string"}}},
    },
)
def prometheus_metrics() -> Response:
    """The counters of every web process of this host (commands accepted by type; with
    ``boxoffice serve``, every part's, the workers' attempts and outcome times
    included), and each view's position and lag read from the store when scraped.
    docs/observability.md lists them."""
    built = container()
    authenticate(built.settings.api_keys, ADMIN)
    operator = built.operator
    read = operator.read
    views = metrics.ViewsCollector(
        metrics.StoreReadings(
            views=lambda: view_ops.projections_status(operator),
            followers=lambda: view_ops.followers_status(operator),
            commands=lambda: read.counts(CommandRegistryProjection.name, "status"),
            sagas=lambda: read.counts(SagasProjection.name, "state"),
            stuck_sagas=lambda: stuck_sagas(read),
            webhooks=built.webhook_counts,
            queue=built.queue_depth,
        )
    )
    text = metrics.exposition(built.metrics.registry, views)
    return Response(text, content_type=metrics.CONTENT_TYPE)


@status.get("/health")
@documented(
    "Health",
    "Whether the event store and the broker are reachable",
    json_answer("Health", "both reachable"),
    public=True,
    answers={"503": json_answer("Health", "one is not")},
)
def health() -> tuple[Response, int]:
    """Whether the event store and the broker can be reached; the followers stalled on
    an event; and who holds each single-active part's lease, for how long."""
    built = container()
    event_store = _check(built.ping_event_store)
    broker = _check(built.ping_broker)
    reachable = event_store["reachable"] and broker["reachable"]
    stalled: list[dict[str, Any]] = []
    leases: list[dict[str, Any]] = []
    if event_store["reachable"]:
        stalled = [
            {"name": name, **row}
            for name, row in built.stalled().items()
            if row["attempts"] >= STALLED_AFTER
        ]
        leases = built.leases()
    body = {
        "status": "ok" if reachable and not stalled else "degraded",
        "event_store": event_store,
        "broker": broker,
        "stalled": stalled,
        "leases": leases,
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
