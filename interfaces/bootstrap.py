"""The composition root: everything is built here, from settings, and nowhere else.

Nothing connects while it is built: the event store opens its pool on first use, in
the process that uses it (after a fork, for Celery's prefork workers).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import cached_property, partial
from typing import Any, TypeVar
from uuid import UUID

from celery import Celery

from application.admission import Admission
from application.catalog import CommandCatalog
from application.command_watcher import CommandWatcher
from application.event_log import BoxofficeApplication
from application.operations.ports import Operator
from application.pipeline import CommandPipeline
from application.ports import CallbackPolicy, Dispatch, Services, Tracer, Undispatched, Untraced
from application.retry import RetryPolicy
from application.saga_runner import ApplicationStore, SagaRunner
from application.segment import WHOLE, Segment
from application.slices import build_catalog
from application.sweeper import StrandedCommandSweeper
from infrastructure import schema, tracing
from infrastructure.admission_tickets import PostgresTickets
from infrastructure.celery_app import BRIEF, CeleryCommandTransport, build_celery
from infrastructure.direct_publish import DirectPublisher, PublishedMarks
from infrastructure.event_store import (
    build_application,
    build_tracker,
    build_view,
    ping,
    position_of,
    view_on,
)
from infrastructure.following import Follower
from infrastructure.history import RecordedHistory
from infrastructure.lease import Lease, LeaseSettings, holder_name, lease_status
from infrastructure.leased_work import FencedTrackingRecorder, Shares
from infrastructure.metrics import PrometheusMetrics
from infrastructure.payment_gateway import build_payment_gateway
from infrastructure.postgres_read_models import PostgresReadModels
from infrastructure.projector import Projector
from infrastructure.rebuild import ProjectionRebuild
from infrastructure.relay import SAFETY_NET_TRACKER, OutboxRelay, SafetyNet
from infrastructure.settings import Settings
from infrastructure.stall_log import StallLog
from infrastructure.subscription import subscribe
from infrastructure.tasks import register_tasks
from infrastructure.view_progress import ViewProgressListener
from infrastructure.webhooks.addresses import AddressPolicy, CallbackUrlPolicy
from infrastructure.webhooks.dispatcher import WebhookDispatcher
from infrastructure.webhooks.outbox import WebhookOutbox
from infrastructure.webhooks.sender import WebhookSender
from projections.command_registry import (
    CommandRegistryProjection,
    CommandRegistryView,
    present_command,
)
from projections.document_projection import DocumentProjection
from projections.document_view import DocumentView
from projections.read_models import InMemoryReadModels, ReadModels
from projections.sagas import SagasProjection, SagasView, get_saga
from projections.views import PROJECTIONS

TD = TypeVar("TD", bound=DocumentView)
# Webhook deliveries in flight at once (at most two per destination).
WEBHOOK_THREADS = 8


@dataclass
class Container:
    """The built service; the event-store objects are made per process, on first use."""

    settings: Settings
    catalog: CommandCatalog
    celery: Celery
    _app: BoxofficeApplication | None = None
    _pipeline: CommandPipeline | None = None
    _watcher: CommandWatcher | None = None
    _read_models: ReadModels | None = None
    _services: Services | None = None
    _metrics: PrometheusMetrics | None = None
    _admission: Admission | None = None
    _direct: DirectPublisher | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def app(self) -> BoxofficeApplication:
        """This process's event-store application."""
        with self._lock:
            if self._app is None:
                self._app = build_application(self.settings)
            return self._app

    @property
    def pipeline(self) -> CommandPipeline:
        """This process's command pipeline."""
        with self._lock:
            return self._pipeline or self._build_pipeline()

    def _build_pipeline(self) -> CommandPipeline:
        retry = RetryPolicy(
            max_attempts=self.settings.max_attempts,
            base_delay=self.settings.retry_base_delay,
            max_delay=self.settings.retry_max_delay,
        )
        self._pipeline = CommandPipeline(
            self.app,
            self.catalog,
            retry,
            self.services,
            self.metrics,
            self.tracer,
            self._dispatcher(),
        )
        return self._pipeline

    def _dispatcher(self) -> Dispatch:
        """Each accepted command's first message, sent by this process (none on the
        in-memory store, which has no relay to rely on: a test plays the relay)."""
        datastore = getattr(self.app.recorder, "datastore", None)
        if datastore is None:
            return Undispatched()
        self._direct = DirectPublisher(
            lambda: CeleryCommandTransport(self.celery, BRIEF),
            PublishedMarks(datastore),
            self.settings.publish_grace_seconds,
            self.metrics.published,
        )
        return self._direct

    @property
    def tracer(self) -> Tracer:
        """This process's spans: OpenTelemetry's once ``tracing.configure`` turned it on
        (``OTEL_TRACES_EXPORTER``), none otherwise."""
        return tracing.OpenTelemetryTracer() if tracing.enabled() else Untraced()

    @property
    def admission(self) -> Admission:
        """This web process's admission control, reading the command registry's backlog
        (never shedding on the in-memory store, which has no registry table)."""
        with self._lock:
            if self._admission is None:
                datastore = getattr(self.app.recorder, "datastore", None)
                registry = (
                    view_on(datastore, CommandRegistryProjection.name, CommandRegistryView)
                    if datastore is not None
                    else None
                )
                gauge = (
                    partial(
                        registry.backlog,
                        application_name=self.app.name,
                        events_table=self.app.recorder.events_table_name,  # type: ignore[attr-defined]
                    )
                    if registry is not None
                    else None
                )
                self._admission = Admission(
                    gauge,
                    self.settings.max_backlog_seconds,
                    self.settings.admission_min_backlog,
                    tickets=PostgresTickets(datastore) if datastore is not None else None,
                )
            return self._admission

    @property
    def metrics(self) -> PrometheusMetrics:
        """This process's counters (``/metrics``, infrastructure/metrics.py)."""
        with self._lock:
            if self._metrics is None:
                self._metrics = PrometheusMetrics()
            return self._metrics

    @property
    def services(self) -> Services:
        """The ports handlers use; the payment gateway is the one ``PAYMENT_GATEWAY`` names."""
        with self._lock:
            if self._services is None:
                self._services = Services(
                    payment_gateway=build_payment_gateway(self.settings, self.app),
                    payment_deadline=timedelta(seconds=self.settings.payment_deadline_seconds),
                )
            return self._services

    def saga_runner(self, segment: Segment = WHOLE) -> SagaRunner:
        """The saga runner (of ``segment``); deadlines come from the sagas read model."""
        sagas = build_view(self.settings, SagasProjection.name, SagasView)
        tracker = build_tracker(self.settings, SagaRunner.name)
        tracker.segments = segment.count
        return SagaRunner(
            tracker,
            ApplicationStore(self.app),
            self.pipeline,
            self.catalog.sagas,
            due=sagas.due,
            segment=segment,
        )

    def shares(self, part: str, total: int) -> Shares | None:
        """The shares of ``part``'s ``total`` leases among the processes running it
        (None for a part of one lease, which one process holds and others wait for)."""
        if total == 1:
            return None
        return Shares(
            self.settings.database.url(), part, holder_name(part), total, self._lease_settings
        )

    @property
    def watcher(self) -> CommandWatcher:
        """This process's watcher of command changes (Prefer: wait, SSE)."""
        with self._lock:
            if self._watcher is None:
                self._watcher = CommandWatcher(self.app, partial(subscribe, self.app.recorder))
            return self._watcher

    @property
    def read_models(self) -> ReadModels:
        """The read models, sharing this process's event-store connection pool; kept in
        this process (:class:`InMemoryReadModels`) over the in-memory event store."""
        with self._lock:
            if self._read_models is None:
                datastore = getattr(self.app.recorder, "datastore", None)
                self._read_models = (
                    PostgresReadModels(
                        self.app,
                        PROJECTIONS,
                        {
                            p.name: self._view(view_on(datastore, p.name, p.view_class))
                            for p in PROJECTIONS
                        },
                        ViewProgressListener(datastore),
                    )
                    if datastore is not None
                    else InMemoryReadModels(self.app, PROJECTIONS)
                )
            return self._read_models

    @property
    def operator(self) -> Operator:
        """The ports of the operator's use cases (:mod:`application.operations`)."""
        return Operator(
            app=self.app,
            pipeline=self.pipeline,
            read=self.read_models,
            history=RecordedHistory(self.app),
            rebuilding=self._rebuilding,
            slices=self.catalog.sagas,
            present_command=present_command,
            saga_document=partial(get_saga, self.read_models),
            stalled=self.stalled,
            leases=self.leases,
            followers=self.followers,
            commands_view=CommandRegistryProjection.name,
            sagas_view=SagasProjection.name,
        )

    def _rebuilding(self, projection: type[DocumentProjection]) -> ProjectionRebuild:
        return ProjectionRebuild(self.app, projection, self.settings.view_segments)

    def position_of(self, aggregate_id: UUID) -> int | None:
        """The event-log position of ``aggregate_id``'s latest event (PostgreSQL only)."""
        return position_of(self.app, aggregate_id)

    def projector(self) -> Projector:
        """A projector running every projection, each view with its own pool.

        With ``WEBHOOK_SECRET`` set it also delivers the webhooks.
        """
        # Each follower's subscription keeps a connection for LISTEN and needs another
        # for its reads: the projector's own application has a pool sized for that.
        segments = Segment.all(self.settings.view_segments)
        count = len(PROJECTIONS) * len(segments) + (1 if self.settings.webhook_secret else 0)
        app = build_application(
            replace(self.settings, db_pool_size=2 * count + 1, db_max_overflow=2)
        )
        # One follower per view and segment, each with its own view object: its lease
        # fences its writes, its pool is its own.
        followers: list[Follower] = [
            p(
                self._view(build_view(self.settings, p.name, p.view_class)),
                app.repository,
                segment,
                self.metrics,
            )
            for p in PROJECTIONS
            for segment in segments
        ]
        loops: list[Callable[[threading.Event], None]] = []
        if self.settings.webhook_secret:
            outbox = build_view(self.settings, WebhookDispatcher.name, WebhookOutbox)
            followers.append(WebhookDispatcher(outbox, app.repository))
            loops.append(self.webhook_sender().run)
        stalls = StallLog(app.recorder.datastore)  # type: ignore[attr-defined]
        shares = self.shares("projector", len(followers))
        return Projector(app, followers, stalls, loops, lease_for=self.lease, shares=shares)

    def _view(self, view: TD) -> TD:
        """``view``, knowing how many segments its projector splits it into."""
        view.segments = self.settings.view_segments
        return view

    def lease(self, name: str) -> Lease:
        """The lease ``name`` (a part, or one view), for this process to hold or wait for."""
        return Lease(
            self.settings.database.url(),
            name,
            holder_name(name),
            self._lease_settings,
        )

    @property
    def _lease_settings(self) -> LeaseSettings:
        return LeaseSettings(
            ttl=self.settings.part_lease_seconds,
            renew_every=self.settings.part_lease_renew_seconds,
        )

    def followers(self) -> dict[str, tuple[int, tuple[str, ...]]]:
        """The relay's, its safety net's and the saga runner's positions (the slowest
        segment's) and topics (none on the in-memory store)."""
        datastore = getattr(self.app.recorder, "datastore", None)
        if datastore is None:
            return {}
        name = self.app.name
        relay = view_on(datastore, "relay", FencedTrackingRecorder)
        net = view_on(datastore, SAFETY_NET_TRACKER, FencedTrackingRecorder)
        sagas = view_on(datastore, SagaRunner.name, FencedTrackingRecorder)
        segments = Segment.all(self.settings.saga_segments)
        return {
            "relay": (relay.max_tracking_id(name) or 0, OutboxRelay.event_topics()),
            SafetyNet.name: (net.max_tracking_id(name) or 0, SafetyNet.event_topics()),
            SagaRunner.name: (
                min(sagas.max_tracking_id(s.tracking_name(name)) or 0 for s in segments),
                self._saga_topics,
            ),
        }

    @cached_property
    def _saga_topics(self) -> tuple[str, ...]:
        """The topics the saga runner follows (a runner built once to ask, not at every
        scrape of the followers)."""
        runner = SagaRunner(None, ApplicationStore(self.app), self.pipeline, self.catalog.sagas)
        return runner.event_topics()

    def leases(self) -> list[dict[str, Any]]:
        """Every lease with its holder and age (none on the in-memory store)."""
        datastore = getattr(self.app.recorder, "datastore", None)
        return lease_status(datastore) if datastore is not None else []

    def webhook_sender(self) -> WebhookSender:
        """The threads that POST the webhooks, with a pool of connections for them."""
        threads = WEBHOOK_THREADS
        pool = replace(self.settings, db_pool_size=threads + 1, db_max_overflow=2)
        return WebhookSender(
            build_view(pool, WebhookDispatcher.name, WebhookOutbox),
            self.settings.webhook_secret,
            AddressPolicy.allowing(self.settings.webhook_allow_networks),
            max_attempts=self.settings.webhook_max_attempts,
            timeout=self.settings.webhook_timeout_seconds,
            threads=threads,
            counted=self.metrics.webhook_attempt,
        )

    @property
    def callback_policy(self) -> CallbackPolicy:
        """Which ``Callback-Url`` a client may give."""
        return CallbackUrlPolicy(
            bool(self.settings.webhook_secret),
            AddressPolicy.allowing(self.settings.webhook_allow_networks),
        )

    def webhook_outbox(self) -> WebhookOutbox | None:
        """The webhook deliveries, sharing this process's pool (None on the in-memory store)."""
        datastore = getattr(self.app.recorder, "datastore", None)
        if datastore is None:
            return None
        return view_on(datastore, WebhookDispatcher.name, WebhookOutbox)

    def relay(self) -> OutboxRelay:
        """An outbox relay publishing through this container's Celery app."""
        tracker = build_tracker(self.settings, "relay")
        transport = CeleryCommandTransport(self.celery)
        return OutboxRelay(self.app, tracker, transport, self.stall_log(), self.metrics.published)

    def safety_net(self) -> SafetyNet:
        """The relay's safety net for the accepts their processes left unpublished."""
        datastore = self.app.recorder.datastore  # type: ignore[attr-defined]
        return SafetyNet(
            self.app,
            build_tracker(self.settings, SAFETY_NET_TRACKER),
            CeleryCommandTransport(self.celery),
            PublishedMarks(datastore),
            self.settings.publish_grace_seconds,
            self.stall_log(),
            self.metrics.published,
        )

    def stall_log(self) -> StallLog | None:
        """Where followers record an event they cannot get past (None on the in-memory store)."""
        datastore = getattr(self.app.recorder, "datastore", None)
        return StallLog(datastore) if datastore is not None else None

    def stalled(self) -> dict[str, dict[str, Any]]:
        """The followers failing on an event now, by name (see :class:`StallLog`)."""
        log = self.stall_log()
        return log.all() if log is not None else {}

    def sweeper(self) -> StrandedCommandSweeper:
        """The sweeper that publishes again commands stranded past their lease."""
        datastore = self.app.recorder.datastore  # type: ignore[attr-defined]
        commands = view_on(datastore, CommandRegistryProjection.name, CommandRegistryView)
        return StrandedCommandSweeper(
            self.pipeline,
            CeleryCommandTransport(self.celery),
            commands.unfinished_since,
            timedelta(seconds=self.settings.command_lease_seconds),
        )

    def ping_event_store(self) -> None:
        """Raise unless the event store's database answers now."""
        ping(self.settings)

    def ping_broker(self) -> None:
        """Raise unless the broker accepts a connection now."""
        with self.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)

    def queue_depth(self) -> int:
        """The messages ready in the command queue, as the broker counts them."""
        with self.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            channel: Any = connection.default_channel  # kombu's stubs lack queue_declare
            declared = channel.queue_declare(self.settings.command_queue, passive=True)
            return int(declared.message_count)

    def webhook_counts(self) -> dict[str, int]:
        """The webhook deliveries by status (none while webhooks are off)."""
        outbox = self.webhook_outbox() if self.settings.webhook_secret else None
        return outbox.counts() if outbox is not None else {}

    def forget_connections(self) -> None:
        """Drop event-store objects inherited across a fork; they are rebuilt on use."""
        self._app = None
        self._pipeline = None
        self._watcher = None
        self._read_models = None
        self._services = None

    def close(self) -> None:
        """Close what this process opened."""
        if self._direct is not None:
            self._direct.close()
        if self._watcher is not None:
            self._watcher.close()
        progress = self._read_models.progress if self._read_models is not None else None
        if isinstance(progress, ViewProgressListener):
            progress.close()
        if self._app is not None:
            self._app.close()
        self.forget_connections()


def migrate(settings: Settings) -> list[str]:
    """Create every table of the service with its read models; the tables' names."""
    return schema.migrate(settings, [(p.name, p.view_class) for p in PROJECTIONS])


def bootstrap(settings: Settings, application: BoxofficeApplication | None = None) -> Container:
    """Build the service from ``settings``.

    ``application`` replaces the PostgreSQL event store, e.g. with the in-memory one in
    unit tests. The modules of ``COMMAND_MODULES`` add their commands and sagas to the catalog.
    """
    celery = build_celery(settings)
    catalog = build_catalog(settings.command_modules)
    container = Container(settings=settings, catalog=catalog, celery=celery, _app=application)
    register_tasks(celery, lambda: container.pipeline, container.forget_connections)
    return container
