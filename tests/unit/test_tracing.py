"""Tracing: off unless asked, the settings it refuses, the spans a command records with
its events, and how a follower's batch and a publish are parented (in a process of
their own: OpenTelemetry's provider is set once per process)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from application.command import Command
from application.event_log import BoxofficeApplication
from application.pipeline import CommandPipeline
from application.retry import RetryPolicy
from application.slices import build_catalog
from infrastructure import tracing
from projections.command_registry import present_command
from tests.support import processes
from tests.support.submit import submission

SHOW: dict[str, Any] = {
    "title": "Hamlet",
    "starts_at": "2027-01-01T20:00:00Z",
    "seats": ["A1"],
    "price_cents": 4500,
}


def test_tracing_is_off_unless_an_exporter_is_named() -> None:
    assert tracing.wanted({}) is None
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "none"}) is None
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "otlp"}) == "otlp"
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "Memory"}) == "memory"
    disabled = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}
    assert tracing.wanted(disabled) is None


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "use one of otlp, console, memory"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "only http/protobuf",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
            "only http/protobuf",
        ),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "jaeger_remote"}, "use one of"),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_TRACES_SAMPLER": "traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "1.5",
            },
            "a number from 0 to 1",
        ),
    ],
)
def test_settings_it_cannot_follow_are_refused(env: dict[str, str], says: str) -> None:
    with pytest.raises(tracing.TracingSettingsError, match=says):
        tracing.wanted(env)


def test_the_share_of_traces_sampled_follows_the_standard_variables() -> None:
    assert tracing.sampled_ratio({}) == 1.0
    assert tracing.sampled_ratio({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}) == 0.0
    ratio = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    assert tracing.sampled_ratio(ratio) == 0.1


class RecordingTracer:
    """A tracer whose spans are numbered, current while their block runs."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.names: list[str] = []
        self.asked: list[tuple[str, str | None, str]] = []

    @contextmanager
    def _span(self, name: str) -> Iterator[None]:
        self.names.append(name)
        self.stack.append(f"00-{'a' * 32}-{len(self.names):016x}-01")
        try:
            yield
        finally:
            self.stack.pop()

    def span(
        self, name: str, parent: str | None = None, *, kind: str = "internal", **attributes: str
    ) -> Any:
        self.asked.append((name, parent, kind))
        return self._span(name)

    def current(self) -> str | None:
        return self.stack[-1] if self.stack else None


def test_a_command_records_the_span_of_its_accept_and_of_each_run() -> None:
    app = BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    tracer = RecordingTracer()
    pipeline = CommandPipeline(app, build_catalog(), RetryPolicy(max_attempts=3), tracer=tracer)

    accepted = pipeline.accept(submission(pipeline, "CreateShow", "k1", show_id="s1", **SHOW))
    published = f"00-{'b' * 32}-{'c' * 16}-01"
    pipeline.execute(accepted.command.id, 1, "worker-1", traceparent=published)

    assert tracer.names == ["accept CreateShow", "run CreateShow"]
    # The run continues the span its message was published under, as its consumer.
    assert tracer.asked[1] == ("run CreateShow", published, "consumer")
    command = pipeline.get_command(accepted.command.id)
    assert command is not None
    assert command.status == "succeeded"
    assert command.traceparent == f"00-{'a' * 32}-{1:016x}-01"
    events = [e for e in app.events.get(command.id) if isinstance(e, Command.CommandSucceeded)]
    assert [e.traceparent for e in events] == [f"00-{'a' * 32}-{2:016x}-01"]
    # The registry shows the trace.
    assert present_command(command)["trace_id"] == "a" * 32


def test_an_untraced_command_has_no_trace_id() -> None:
    app = BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    pipeline = CommandPipeline(app, build_catalog(), RetryPolicy(max_attempts=3))

    accepted = pipeline.accept(submission(pipeline, "CreateShow", "k1", show_id="s1", **SHOW))

    assert accepted.command.traceparent is None
    assert present_command(accepted.command)["trace_id"] is None


SPANS_IN_A_PROCESS = textwrap.dedent(
    """
    import json
    from opentelemetry import trace
    from infrastructure import tracing

    assert tracing.configure("unit")
    one = "00-" + "1" * 32 + "-" + "1" * 16 + "-01"
    two = "00-" + "2" * 32 + "-" + "2" * 16 + "-01"
    seen = {}
    with tracing.taken("single", [one, None, one]):
        seen["single"] = tracing.current_ids()
        with tracing.span("publish", two):  # under the batch's span, not ``two``
            pass
    with tracing.taken("several", [one, two]):
        seen["several"] = tracing.current_ids()
        with tracing.span("publish", two):  # none current: under ``two``
            pass
    with tracing.taken("untraced", [None]):
        seen["untraced"] = tracing.current_ids()
    later = "00-" + "1" * 32 + "-" + "3" * 16 + "-01"
    with tracing.taken("one trace, two spans", [one, two, later]):
        pass
    trace.get_tracer_provider().force_flush()
    exporter = trace.get_tracer_provider()._active_span_processor._span_processors[0]
    spans = [json.loads(line) for line in exporter.span_exporter.spans]
    print(json.dumps({"seen": seen, "spans": spans}))
    """
)


def last_line_of(script: str, **env: str) -> str:
    """The last line ``script`` prints, run in a process of its own with tracing on
    (the ``memory`` exporter) and ``env``: tracing is configured once per process."""
    return processes.last_line_of(script, **{"OTEL_TRACES_EXPORTER": "memory", **env})


def test_a_batch_of_one_trace_runs_inside_its_span_and_a_batch_of_several_inside_none() -> None:
    found = json.loads(
        last_line_of(SPANS_IN_A_PROCESS, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="psycopg")
    )
    seen, spans = found["seen"], found["spans"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)

    (single,) = by_name["single"]
    assert single["trace"] == "1" * 32
    assert single["parent"] == "1" * 16
    assert seen["single"] == {"trace_id": "1" * 32, "span_id": single["span"]}
    # Two traces in a batch: a span in each, and none current (its lines name no trace).
    assert sorted(s["trace"] for s in by_name["several"]) == ["1" * 32, "2" * 32]
    assert seen["several"] == {}
    nested, alone = sorted(by_name["publish"], key=lambda s: s["trace"])
    assert nested["parent"] == single["span"]
    assert alone["trace"] == "2" * 32
    assert alone["parent"] == "2" * 16
    assert "untraced" not in by_name
    assert seen["untraced"] == {}
    # A command's accept and its run in one batch: one span, under the later.
    assert sorted((s["trace"], s["parent"]) for s in by_name["one trace, two spans"]) == [
        ("1" * 32, "3" * 16),
        ("2" * 32, "2" * 16),
    ]


EDGES_IN_A_PROCESS = textwrap.dedent(
    """
    import json, uuid
    from celery import Celery
    from flask import Flask, request
    from opentelemetry import trace
    from infrastructure import tracing
    from infrastructure.celery_app import CeleryCommandTransport

    assert tracing.configure("unit")
    celery = Celery(broker="memory://", set_as_current=False)
    celery.conf.update(task_default_queue="commands", task_ignore_result=True)
    app = Flask("unit")

    @app.put("/shows/<show_id>")
    def put(show_id):
        with tracing.span("accept CreateShow"):
            with tracing.span("publish CreateShow", kind="producer"):
                CeleryCommandTransport(celery).publish(uuid.uuid4(), 1)
        return {}, 202

    @app.get("/health")
    def health():
        return {}, 200

    @app.before_request
    def refuse():
        if request.path == "/shows/locked":
            return {}, 401

    @app.get("/away")
    def away():
        return {}, 503

    tracing.instrument_flask(app)
    client = app.test_client()
    client.put("/shows/s1", headers={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    client.get("/health")
    client.get("/away")
    refused = client.put("/shows/locked")
    garbled = client.put("/shows/s2", headers={"traceparent": "00-nonsense"})
    assert (refused.status_code, garbled.status_code) == (401, 202)
    with celery.connection_for_read() as connection:
        message = connection.SimpleQueue("commands").get(timeout=5)
    trace.get_tracer_provider().force_flush()
    exporter = trace.get_tracer_provider()._active_span_processor._span_processors[0]
    spans = [json.loads(line) for line in exporter.span_exporter.spans]
    print(json.dumps({"spans": spans, "header": message.headers.get("traceparent")}))
    """
)


def test_a_request_and_a_message_continue_the_trace_at_the_edges() -> None:
    """The request's server span continues the client's ``traceparent`` and is named
    by its route; a message carries the span it was published under in its headers;
    probes are not traced."""
    found = json.loads(last_line_of(EDGES_IN_A_PROCESS))
    by_name = {span["name"]: span for span in found["spans"]}
    assert set(by_name) == {
        "PUT /shows/<show_id>",
        "GET /away",
        "accept CreateShow",
        "publish CreateShow",
    }
    # The client's request, the one a hook refused, the one with a garbled traceparent.
    puts = [span for span in found["spans"] if span["name"] == "PUT /shows/<show_id>"]
    assert len(puts) == 3

    request = puts[0]
    assert request["kind"] == "SERVER"
    assert (request["trace"], request["parent"]) == ("1" * 32, "2" * 16)
    assert request["attributes"] == {
        "http.request.method": "PUT",
        "url.path": "/shows/s1",
        "http.route": "/shows/<show_id>",
        "http.response.status_code": 202,
    }
    assert not request["error"]
    client_trace = {span["name"]: span for span in found["spans"] if span["trace"] == "1" * 32}
    accept, publish = client_trace["accept CreateShow"], client_trace["publish CreateShow"]
    assert accept["parent"] == request["span"]
    assert (publish["parent"], publish["kind"]) == (accept["span"], "PRODUCER")
    assert found["header"] == f"00-{'1' * 32}-{publish['span']}-01"
    # A 5xx is an error; its trace is the service's own when the client sent none.
    away = by_name["GET /away"]
    assert away["error"]
    assert away["parent"] is None
    assert away["trace"] != "1" * 32
    # A request a hook answered early is named by its route all the same.
    refused = puts[1]
    assert refused["attributes"]["http.response.status_code"] == 401
    assert refused["attributes"]["http.route"] == "/shows/<show_id>"
    # A traceparent that is not one starts a trace of the service's own.
    garbled = puts[2]
    assert garbled["parent"] is None
    assert garbled["attributes"]["http.response.status_code"] == 202


SAMPLED_IN_A_PROCESS = textwrap.dedent(
    """
    import json
    from opentelemetry import trace
    from infrastructure import tracing

    assert tracing.configure("unit")
    sampled = "00-" + "1" * 32 + "-" + "1" * 16 + "-01"
    with tracing.span("root"):
        pass
    with tracing.span("continued", sampled):
        pass
    trace.get_tracer_provider().force_flush()
    exporter = trace.get_tracer_provider()._active_span_processor._span_processors[0]
    print(json.dumps(sorted(json.loads(s)["name"] for s in exporter.span_exporter.spans)))
    """
)


def test_a_ratio_of_zero_starts_no_trace_but_continues_a_sampled_one() -> None:
    spans = last_line_of(
        SAMPLED_IN_A_PROCESS,
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0",
    )
    assert json.loads(spans) == ["continued"]


STATEMENTS_IN_A_PROCESS = textwrap.dedent(
    """
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from infrastructure import tracing

    assert tracing.configure("unit")
    print(PsycopgInstrumentor().is_instrumented_by_opentelemetry)
    """
)


@pytest.mark.parametrize(("trace_sql", "instrumented"), [("", "False"), ("true", "True")])
def test_sql_statements_are_traced_only_when_asked(trace_sql: str, instrumented: str) -> None:
    """A span per statement doubles what tracing costs: psycopg is left out unless
    ``TRACE_SQL`` asks for it."""
    found = last_line_of(STATEMENTS_IN_A_PROCESS, TRACE_SQL=trace_sql)
    assert found == instrumented
    assert tracing.statements_traced({"TRACE_SQL": trace_sql}) is (instrumented == "True")


def test_the_memory_exporter_keeps_only_the_newest_spans_as_text() -> None:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext

    kept = tracing.RecentSpans()
    kept.export(
        [
            ReadableSpan(str(i), SpanContext(trace_id=1, span_id=i + 1, is_remote=False))
            for i in range(tracing.MEMORY_SPANS + 5)
        ]
    )

    assert len(kept.spans) == tracing.MEMORY_SPANS
    oldest = json.loads(kept.spans[0])
    assert (oldest["name"], oldest["trace"], oldest["span"]) == ("5", f"{1:032x}", f"{6:016x}")
    # Text, not the span's objects: nothing the garbage collector walks.
    assert all(type(line) is str for line in kept.spans)


CONTEXTS_IN_A_PROCESS = textwrap.dedent(
    """
    import json
    from opentelemetry import trace
    from infrastructure import tracing

    assert tracing.configure("unit")
    cases = [
        "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        "00-" + "a" * 32 + "-" + "b" * 16 + "-00",
        "00-" + "0" * 32 + "-" + "b" * 16 + "-01",
        "00-" + "A" * 32 + "-" + "b" * 16 + "-01",
        "00-nonsense",
        "01-" + "a" * 32 + "-" + "b" * 16 + "-01",
    ]
    def seen(context):
        span = trace.get_current_span(context).get_span_context()
        return [span.trace_id, span.span_id, span.trace_flags, span.is_remote, span.is_valid]
    print(json.dumps([
        [seen(tracing._context_of(c)), seen(tracing._ours[1].extract({"traceparent": c}))]
        for c in cases
    ]))
    """
)


def test_a_recorded_traceparent_is_read_as_the_propagator_reads_it() -> None:
    """Our direct read of a traceparent (the one we record) and the propagator's agree,
    and what is not one of ours is left to the propagator."""
    for ours, propagators in json.loads(last_line_of(CONTEXTS_IN_A_PROCESS)):
        assert ours == propagators
