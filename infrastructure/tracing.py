"""OpenTelemetry traces: one trace follows a command through every process.

Off unless ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``: OTLP over HTTP,
configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables; ``console``: the spans
as JSON on stdout; ``memory``: the last spans kept in the process and dropped, which
costs what tracing costs without shipping anything). ``OTEL_SDK_DISABLED=true`` turns
it off whatever the exporter. ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``
name the processes (``boxoffice-<part>`` unless set); ``OTEL_BSP_*`` tune the batching.

How a trace crosses the processes:

* web: a server span per request (:func:`instrument_flask`, continuing the client's
  ``traceparent``); the accept's span is recorded with the command
  (``CommandAccepted.traceparent``), so the registry shows its ``trace_id``;
* web, relay and saga runner: each message is published under a producer span, whose
  W3C ``traceparent`` rides in the message's headers (:func:`current_traceparent`);
* worker: the run's consumer span continues that header; it is recorded with the
  outcome (``CommandSucceeded.traceparent``, and the other outcomes);
* projector and saga runner: each event they take is taken in a span under the span
  recorded with it, or for an event a command's run saved (a reservation's), under
  that run's; a saga's next commands are accepted inside, so that one trace follows
  the saga from the client's request to its last command;
* with ``TRACE_SQL=true``, psycopg's instrumentation adds the statements of those spans
  (a statement outside any trace, a follower's poll, a lease's renewal, is not
  sampled); off by default, as a span per statement doubles what tracing costs.

The request and message spans are our own, not Flask's and Celery's instrumentations:
those cost 0.29 and 0.21 ms of CPU per request and per publish, several times a span's
cost, for attributes nobody reads here (docs/decisions.md, "Our own spans at the
edges").

The library is imported only here and only when tracing is on, so that the parts pay
nothing for it otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExportResult

logger = logging.getLogger(__name__)

EXPORTER = "OTEL_TRACES_EXPORTER"
# Whether psycopg's instrumentation gives each SQL statement inside a trace a span.
STATEMENTS = "TRACE_SQL"
EXPORTERS = ("otlp", "console", "memory")
# How many finished spans the ``memory`` exporter keeps (the newest).
MEMORY_SPANS = 10_000

_configured: list[str] = []
# Our tracer, the traceparent extractor, and what makes the context of a traceparent's
# ids read directly (:func:`_context_of`), made once (each costs objects per span).
_ours: list[Any] = []
# OpenTelemetry's span kinds by name ("server", "producer", "consumer"...), once on.
_kinds: dict[str, Any] = {}
# Paths whose requests are not traced: probes, scrapes and the console are not commands.
UNTRACED_PATHS = ("/health", "/metrics", "/console")
# A traceparent after its version: the trace's, the span's ids and the flags, in hex.
_HEX = re.compile(r"[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


class TracingSettingsError(ValueError):
    """Raised when the OTEL_* variables ask for what this service cannot do."""


def wanted(env: Mapping[str, str] | None = None) -> str | None:
    """The exporter the environment asks for, or None when tracing is off; raises
    :class:`TracingSettingsError` for an exporter or protocol it cannot use."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter = env.get(EXPORTER, "").strip().lower()
    if exporter in ("", "none"):
        return None
    if exporter not in EXPORTERS:
        raise TracingSettingsError(
            f"{EXPORTER}={exporter!r}: use one of {', '.join(EXPORTERS)} or none"
        )
    protocol = env.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if exporter == "otlp" and protocol not in ("", "http/protobuf"):
        raise TracingSettingsError(
            f"OTLP protocol {protocol!r}: only http/protobuf is installed (point it at "
            "the collector's HTTP port, 4318)"
        )
    sampled_ratio(env)
    return exporter


def enabled() -> bool:
    """Whether this process traces (:func:`configure` turned it on)."""
    return bool(_configured)


def configure(component: str) -> bool:
    """Turn tracing on for this process (and the processes it forks) if the environment
    asks for it; True if it did. psycopg's statements are traced only with
    ``TRACE_SQL=true`` (and psycopg not named in ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``)."""
    exporter_name = wanted()
    if exporter_name is None or _configured:
        return bool(_configured)
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": f"boxoffice-{component}"}),
        sampler=ParentBased(root=_roots_of_work(sampled_ratio())),
    )
    provider.add_span_processor(BatchSpanProcessor(_exporter(exporter_name)))
    trace.set_tracer_provider(provider)
    if statements_traced() and "psycopg" not in _disabled():
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

        PsycopgInstrumentor().instrument()
    from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    def remote(trace_id: int, span_id: int, flags: int) -> Any:
        span = NonRecordingSpan(SpanContext(trace_id, span_id, True, TraceFlags(flags)))
        return trace.set_span_in_context(span)

    _ours[:] = [trace.get_tracer("boxoffice"), TraceContextTextMapPropagator(), remote]
    _kinds.update({kind.name.lower(): kind for kind in SpanKind})
    _configured.append(exporter_name)
    logger.info("tracing on: %s exporter", exporter_name)
    return True


def instrument_flask(app: Flask) -> None:
    """Open a server span per request of ``app`` (continuing the client's
    ``traceparent``), if tracing is on; none for :data:`UNTRACED_PATHS`.

    The span follows OpenTelemetry's HTTP conventions for what an operator reads: its
    name is the method and the route (``PUT /shows/<show_id>``), with
    ``http.request.method``, ``url.path``, ``http.route`` and
    ``http.response.status_code``; a 5xx marks it as an error."""
    if not enabled():
        return
    import flask
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    tracer, propagator, server = _ours[0], _ours[1], _kinds["server"]
    inner = app.wsgi_app

    def traced(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith(UNTRACED_PATHS):
            return inner(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        carrier = {"traceparent": environ.get("HTTP_TRACEPARENT", "")}
        if "HTTP_TRACESTATE" in environ:
            carrier["tracestate"] = environ["HTTP_TRACESTATE"]
        with tracer.start_as_current_span(
            method,
            context=propagator.extract(carrier) if carrier["traceparent"] else None,
            kind=server,
            attributes={"http.request.method": method, "url.path": path},
        ) as span:

            def answered(status: str, headers: Any, exc_info: Any = None) -> Any:
                code = int(status[:3])
                span.set_attribute("http.response.status_code", code)
                if code >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                return start_response(status, headers, exc_info)

            return inner(environ, answered)

    def routed() -> None:
        rule = flask.request.url_rule
        if rule is not None:
            span = trace.get_current_span()
            span.update_name(f"{flask.request.method} {rule.rule}")
            span.set_attribute("http.route", rule.rule)

    # First of the hooks: one that answers early (a refused key, a rate limit) stops
    # the others, and its request is still named by its route.
    app.before_request_funcs.setdefault(None, []).insert(0, routed)
    app.wsgi_app = traced  # type: ignore[method-assign]


def statements_traced(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``TRACE_SQL`` asks for a span per SQL statement."""
    env = os.environ if env is None else env
    return env.get(STATEMENTS, "").strip().lower() in ("1", "true", "yes", "on")


def _disabled() -> set[str]:
    """The instrumentations ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` leaves out."""
    names = os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    return {name.strip() for name in names.split(",")}


def _exporter(name: str) -> Any:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    return RecentSpans()


SAMPLERS = (
    "always_on",
    "parentbased_always_on",
    "always_off",
    "parentbased_always_off",
    "traceidratio",
    "parentbased_traceidratio",
)


def sampled_ratio(env: Mapping[str, str] | None = None) -> float:
    """The share of traces sampled, from the standard ``OTEL_TRACES_SAMPLER`` (and
    ``OTEL_TRACES_SAMPLER_ARG`` for a ratio); raises :class:`TracingSettingsError` for
    a sampler this service does not offer. A trace's later spans follow its first
    span's decision, in every process, whichever is named."""
    env = os.environ if env is None else env
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    if name not in SAMPLERS:
        raise TracingSettingsError(
            f"OTEL_TRACES_SAMPLER={name!r}: use one of {', '.join(SAMPLERS)}"
        )
    if name.endswith("always_on"):
        return 1.0
    if name.endswith("always_off"):
        return 0.0
    raw = env.get("OTEL_TRACES_SAMPLER_ARG", "1.0").strip() or "1.0"
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise TracingSettingsError(f"OTEL_TRACES_SAMPLER_ARG={raw!r}: a number from 0 to 1")
    return ratio


def _roots_of_work(ratio: float = 1.0) -> Any:
    """The sampler of a trace's first span: ``ratio`` of the traces that work starts (a
    request, a message published, an event taken), by trace id, and none that a bare
    statement would start: a follower's poll or a lease's renewal outside any command is
    not worth a trace each."""
    from opentelemetry.sdk.trace.sampling import (
        Decision,
        Sampler,
        SamplingResult,
        TraceIdRatioBased,
    )
    from opentelemetry.trace import SpanKind

    by_id = TraceIdRatioBased(ratio)

    class RootsOfWork(Sampler):
        def should_sample(
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            if kind == SpanKind.CLIENT:
                return SamplingResult(Decision.DROP)
            return by_id.should_sample(parent_context, trace_id, name, kind, attributes, links)

        def get_description(self) -> str:
            return "RootsOfWork"

    return RootsOfWork()


class RecentSpans:
    """The ``memory`` exporter: keeps the newest :data:`MEMORY_SPANS` spans, each as a
    line of JSON (:func:`span_record`), as an exporter encodes what it ships; a
    benchmark's tracing cost without a collector, in a bounded memory.

    A line of text is not the span's objects, which Python's garbage collector would
    walk at every full collection for as long as they were kept: ten thousand spans of
    some twenty objects each doubled what collections cost a traced web process."""

    def __init__(self) -> None:
        self.spans: deque[str] = deque(maxlen=MEMORY_SPANS)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.spans.extend(json.dumps(span_record(span)) for span in spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.spans.clear()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """What the ``memory`` exporter keeps of ``span``: its name and kind (``SERVER``,
    ``PRODUCER``...), its trace's, its own and its parent's ids (hex, as in a
    ``traceparent``), its start and end (ns since the epoch), its attributes and
    whether it ended in error."""
    context, parent = span.get_span_context(), span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace": f"{context.trace_id:032x}" if context else None,
        "span": f"{context.span_id:016x}" if context else None,
        "parent": f"{parent.span_id:016x}" if parent else None,
        "start": span.start_time,
        "end": span.end_time,
        "attributes": dict(span.attributes or {}),
        "error": span.status.status_code.name == "ERROR",
    }


class OpenTelemetryTracer:
    """The application's :class:`~application.ports.Tracer` over OpenTelemetry."""

    def span(
        self, name: str, parent: str | None = None, *, kind: str = "internal", **attributes: str
    ) -> AbstractContextManager[None]:
        return span(name, parent, kind=kind, **attributes)

    def current(self) -> str | None:
        return current_traceparent()


@contextmanager
def span(
    name: str, parent: str | None = None, *, kind: str = "internal", **attributes: str
) -> Iterator[None]:
    """A span around the block, under the span current here, or when none is (a
    follower's batch of several traces, a worker's run of a message), under ``parent``
    (a traceparent); ``kind`` is OpenTelemetry's, by name (``producer``: a message is
    published inside, ``consumer``: a message is run); nothing when tracing is off."""
    if not _configured:
        yield
        return
    context = _context_of(parent) if parent and _current_context() is None else None
    with _ours[0].start_as_current_span(
        name,
        context=context,
        kind=_kinds[kind],
        attributes={f"boxoffice.{k}": v for k, v in attributes.items()} if attributes else None,
    ):
        yield


def _context_of(traceparent: str) -> Any:
    """The context of a span recorded as ``traceparent`` by :func:`current_traceparent`
    (with an event, in a message's headers), read directly: the propagator's parse costs
    several times more, for the checks a client's header needs (the request's span
    uses it). Anything else goes through the propagator, which rejects what it must."""
    if traceparent.startswith("00-") and _HEX.fullmatch(traceparent, 3):
        trace_id, span_id = int(traceparent[3:35], 16), int(traceparent[36:52], 16)
        if trace_id and span_id:  # all zeros is no span: the propagator says how
            return _ours[2](trace_id, span_id, int(traceparent[53:], 16))
    return _ours[1].extract({"traceparent": traceparent})


def _current_context() -> Any:
    """The context of the span current here; None when tracing is off or outside a
    trace."""
    if not _configured:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return context if context.is_valid else None


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the span current here (for a message's headers, or
    to record with an event); None when tracing is off or outside a trace."""
    context = _current_context()
    if context is None:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def current_ids() -> dict[str, str]:
    """The trace and span ids of the span current here, for a log line (empty when
    tracing is off or outside a trace)."""
    context = _current_context()
    if context is None:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


@contextmanager
def taken(name: str, parents: Sequence[str | None]) -> Iterator[None]:
    """A span ``name`` per distinct trace of ``parents`` (traceparents; None: not
    traced) around the block: a follower's batch as each of its commands' traces sees
    it, under the trace's last span in the batch (a command's accept and its run in
    one batch: one span, under the run, the later). With one trace, the block runs
    inside its span, so that what it does (a saga's commands) continues the trace; a
    batch of several is no one trace's, so that its log lines name none."""
    # The trace id is the traceparent's second field: 00-<trace id>-<span id>-<flags>.
    by_trace = {p[3:35]: p for p in parents if p} if _configured else {}
    distinct = list(by_trace.values())
    if not distinct:
        yield
        return
    tracer = _ours[0]
    if len(distinct) == 1:
        with tracer.start_as_current_span(name, context=_context_of(distinct[0])):
            yield
        return
    spans = [tracer.start_span(name, context=_context_of(p)) for p in distinct]
    try:
        yield
    finally:
        for each in spans:
            each.end()
