"""The composition root: everything is built here, from settings, and nowhere else.

Nothing connects while it is built: the event store opens its pool on first use, in
the process that uses it (after a fork, for Celery's prefork workers).
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field

from celery import Celery

from application.commands import build_registry
from application.pipeline import BoxofficeApplication, CommandPipeline
from application.registry import CommandRegistry
from application.retry import RetryPolicy
from application.waiting import OutcomeWaiter
from infrastructure.celery_app import CeleryCommandTransport, build_celery
from infrastructure.event_store import build_application, build_tracker, ping
from infrastructure.relay import OutboxRelay
from infrastructure.settings import Settings
from infrastructure.tasks import register_tasks


@dataclass
class Container:
    """The built service; the event-store objects are made per process, on first use."""

    settings: Settings
    registry: CommandRegistry
    celery: Celery
    _app: BoxofficeApplication | None = None
    _pipeline: CommandPipeline | None = None
    _waiter: OutcomeWaiter | None = None
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
        self._pipeline = CommandPipeline(self.app, self.registry, retry)
        return self._pipeline

    @property
    def waiter(self) -> OutcomeWaiter:
        """This process's waiter for command outcomes."""
        with self._lock:
            if self._waiter is None:
                self._waiter = OutcomeWaiter(self.app)
            return self._waiter

    def relay(self) -> OutboxRelay:
        """An outbox relay publishing through this container's Celery app."""
        tracker = build_tracker(self.settings, "relay")
        return OutboxRelay(self.app, tracker, CeleryCommandTransport(self.celery))

    def ping_event_store(self) -> None:
        """Raise unless the event store's database answers now."""
        ping(self.settings)

    def ping_broker(self) -> None:
        """Raise unless the broker accepts a connection now."""
        with self.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)

    def forget_connections(self) -> None:
        """Drop event-store objects inherited across a fork; they are rebuilt on use."""
        self._app = None
        self._pipeline = None
        self._waiter = None

    def close(self) -> None:
        """Close what this process opened."""
        if self._waiter is not None:
            self._waiter.close()
        if self._app is not None:
            self._app.close()
        self.forget_connections()


def bootstrap(settings: Settings, application: BoxofficeApplication | None = None) -> Container:
    """Build the service from ``settings``.

    ``application`` replaces the PostgreSQL event store, e.g. with the in-memory one in
    unit tests. The modules of ``COMMAND_MODULES`` add their commands to the registry.
    """
    celery = build_celery(settings)
    registry = build_registry()
    for name in settings.command_modules:
        importlib.import_module(name).register(registry)
    container = Container(settings=settings, registry=registry, celery=celery, _app=application)
    register_tasks(celery, lambda: container.pipeline, container.forget_connections)
    return container
