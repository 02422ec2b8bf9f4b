"""One reservation's trace, as the real parts export it (OTLP over HTTP, received in the
test's memory): from the client's request through the web's accept, its publish
and RabbitMQ to the worker's run, and on to the saga's next commands, each span under
the one that caused it."""

from __future__ import annotations

import secrets
import uuid

import pytest

from tests.e2e.conftest import (
    LiveService,
    create_show,
    log_lines,
    place_reservation,
    reservation_settled,
)
from tests.support.otlp import Span
from tests.support.processes import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def descends(spans: list[Span], span: Span, ancestor: Span) -> bool:
    """Whether ``span`` is under ``ancestor``, however deep."""
    by_id = {s.span_id: s for s in spans}
    at: Span | None = span
    while at is not None:
        if at.parent_id == ancestor.span_id:
            return True
        at = by_id.get(at.parent_id)
    return False


def only(
    spans: list[Span], name: str, service: str, parent: Span | None = None, *, deep: bool = False
) -> Span:
    """The one span ``name`` of ``service`` (under ``parent``, if given: its child, or
    ``deep``, its descendant)."""
    found = [
        s
        for s in spans
        if s.name == name
        and s.service == service
        and (
            parent is None or s.parent_id == parent.span_id or (deep and descends(spans, s, parent))
        )
    ]
    names = sorted({f"{s.name} ({s.service})" for s in spans if s.kind != "SPAN_KIND_CLIENT"})
    assert len(found) == 1, f"{name} ({service}) under {parent}: one of {names}"
    return found[0]


def test_a_reservation_is_one_trace_from_the_request_to_the_sagas_next_command(
    live: LiveService,
) -> None:
    client = live.client()
    show_id, reservation_id = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    create_show(live, show_id, seat="A1", price_cents=10)
    # The client's own trace: the service continues it.
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    traceparent = f"00-{trace_id}-{client_span}-01"
    place_reservation(live, show_id, reservation_id, headers={"traceparent": traceparent})
    saga_id = reservation_settled(live, reservation_id)
    commands = client.request("GET", f"/commands?correlation_id={saga_id}").body["items"]
    by_type = {c["type"]: c for c in commands}
    assert set(by_type) == {
        "PlaceReservation",
        "ReserveSeats",
        "ChargePayment",
        "ConfirmReservation",
    }
    # One trace per saga: every command it took is in the client's trace.
    assert {c["trace_id"] for c in commands} == {trace_id}, [
        (c["type"], c["trace_id"]) for c in commands
    ]

    def orphans() -> list[Span]:
        spans = live.traces.trace(trace_id)
        ids = {s.span_id for s in spans} | {client_span}
        return [s for s in spans if s.parent_id not in ids]

    def exported() -> bool:
        # A span is exported when it ends, after its children: wait for the parents too.
        names = {(s.name, s.service) for s in live.traces.trace(trace_id)}
        return ("run ConfirmReservation", "boxoffice-worker") in names and not orphans()

    wait_until(exported, 30, "the spans of the saga's last command and their parents")
    spans = live.traces.trace(trace_id)

    # web: the request continues the client's span; the accept is inside it, and its
    # statements inside the accept.
    request = next(s for s in spans if s.kind == "SPAN_KIND_SERVER" and s.parent_id == client_span)
    assert request.service == "boxoffice-web"
    accept = only(spans, "accept PlaceReservation", "boxoffice-web", request)
    assert any(s.parent_id == accept.span_id and s.kind == "SPAN_KIND_CLIENT" for s in spans)
    # web: publishes under the accept once it committed; the producer span's
    # traceparent rides in the message's headers to RabbitMQ.
    publish = only(spans, "publish PlaceReservation", "boxoffice-web", accept)
    assert publish.kind == "SPAN_KIND_PRODUCER"
    # worker: the run continues the message's span, as its consumer.
    run = only(spans, "run PlaceReservation", "boxoffice-worker", publish)
    assert run.kind == "SPAN_KIND_CONSUMER"
    # saga runner: takes the placed reservation under the run that saved it, and
    # issues the saga's first command there, and publishes it.
    taken = only(spans, "saga_runner", "boxoffice-saga-runner", run)
    reserve = only(spans, "publish ReserveSeats", "boxoffice-saga-runner", taken, deep=True)
    only(spans, "run ReserveSeats", "boxoffice-worker", reserve)
    # projector: the registry takes the accept and the run's outcome under their spans.
    registry = [s for s in spans if s.service == "boxoffice-projector"]
    assert {s.parent_id for s in registry} >= {run.span_id}
    # Every span of the trace hangs from another of it, up to the client's.
    assert orphans() == []

    # Each part's lines about the saga's commands carry its trace.
    for part in ("web", "worker", "saga-runner"):
        lines = [line for line in log_lines(live, part) if line.get("correlation_id") == saga_id]
        assert lines, part
        assert {line.get("trace_id") for line in lines} == {trace_id}, part
