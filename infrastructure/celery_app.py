"""The Celery app: configured from settings, connecting only when first used."""

from __future__ import annotations

import math
import socket
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from celery import Celery
from kombu import Exchange, Queue

from infrastructure import tracing
from infrastructure.settings import Settings

EXECUTE_TASK = "boxoffice.commands.execute.v1"


def build_celery(settings: Settings) -> Celery:
    """A Celery app for the configured broker; tasks are registered by ``infrastructure.tasks``."""
    celery = Celery("boxoffice", set_as_current=False)
    celery.conf.update(
        broker_url=settings.broker,
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(settings),
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        # No result backend: the disabled one holds nothing, so one per process will
        # do, instead of one per thread, each made by scanning every installed
        # package's entry points (a web process's request threads publish).
        result_backend_thread_safe=True,
        task_default_queue=settings.command_queue,
        # A message is acknowledged only after its command's outcome is recorded, and
        # redelivered when the worker dies: at-least-once delivery. The Command aggregate
        # turns it into exactly-once effects.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=settings.worker_prefetch,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        enable_utc=True,
    )
    if settings.command_queue_type == "quorum" and not settings.broker.startswith("filesystem"):
        # Replicated over the cluster's nodes. Celery then turns off global QoS (quorum
        # queues have none) and, for a topic exchange, sends delayed messages (retries
        # with backoff) through RabbitMQ's native delayed delivery instead of holding
        # them in a worker until their time (docs/deploy.md).
        exchange = Exchange(settings.command_queue, type="topic")
        celery.conf.update(
            task_queues=[
                Queue(
                    settings.command_queue,
                    exchange,
                    routing_key=settings.command_queue,
                    queue_arguments={"x-queue-type": "quorum"},
                )
            ],
            task_default_exchange=settings.command_queue,
            task_default_exchange_type="topic",
            task_default_routing_key=settings.command_queue,
        )
    if settings.broker.startswith("filesystem"):
        # kombu's own writes a message file in place, so a consumer can read it torn.
        celery.conf.broker_transport = "infrastructure.filesystem_transport:Transport"
        # The server-less transport has no broadcast exchange for remote control.
        celery.conf.worker_enable_remote_control = False
    return celery


def _transport_options(settings: Settings) -> dict[str, Any]:
    if settings.broker.startswith("filesystem"):
        folder = settings.broker_folder
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            # Its exchange tables; kombu's default is "control" in the working directory.
            "control_folder": str(folder / "control"),
            "store_processed": False,
            # The transport polls its folder; its default second would add a second to
            # every hop of a saga.
            "polling_interval": 0.05,
        }
    return {
        # Publisher confirms: a publish returns only once RabbitMQ has the message.
        "confirm_publish": True,
        # py-amqp's default TCP_USER_TIMEOUT of 1 s makes a publisher that RabbitMQ
        # throttles (flow control) fail; give it 30 s.
        "socket_settings": {socket.TCP_USER_TIMEOUT: 30_000},
        "max_retries": 3,
    }


# The message header that says when the message was published.
PUBLISHED_AT = "boxoffice_published_at"
# The message header that carries the span it was published under (W3C's name, as
# OpenTelemetry's own Celery instrumentation puts it, so a message of either is read).
TRACEPARENT = "traceparent"


# How a publish retries while the broker cannot be reached: a part's patience, and a
# web process's (which gives up soon: the relay publishes what it could not).
PATIENT = {"max_retries": 5, "interval_start": 0.2, "interval_step": 0.5}
BRIEF = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}


class CeleryCommandTransport:
    """:class:`application.ports.CommandTransport` over Celery."""

    def __init__(self, celery: Celery, retry_policy: dict[str, float] | None = None) -> None:
        self._celery = celery
        self._retry_policy = retry_policy or PATIENT
        self._queue = str(celery.conf.task_default_queue)
        queues = celery.conf.task_queues or ()
        # Native delayed delivery counts whole seconds, down: round up, never early.
        self._whole_seconds = any(
            (q.queue_arguments or {}).get("x-queue-type") == "quorum" for q in queues
        )

    def publish(
        self, command_id: UUID, attempt: int, eta: datetime | None = None, takeover: bool = False
    ) -> None:
        """Publish "run ``attempt`` of ``command_id``", to run no earlier than ``eta``."""
        countdown = None
        # When it was sent, for the command's timeline (a worker records it with the
        # run); a header, which a worker of an earlier release ignores.
        headers = {PUBLISHED_AT: datetime.now(UTC).isoformat()}
        traceparent = tracing.current_traceparent()
        if traceparent is not None:
            headers[TRACEPARENT] = traceparent
        if eta is not None and self._whole_seconds:
            countdown = math.ceil((eta - datetime.now(UTC)).total_seconds())
            eta = None
        self._celery.send_task(
            EXECUTE_TASK,
            args=[str(command_id), attempt],
            kwargs={"takeover": True} if takeover else {},
            headers=headers,
            task_id=f"{command_id}.{attempt}",
            eta=eta,
            countdown=countdown if countdown and countdown > 0 else None,
            queue=self._queue,
            retry=True,
            retry_policy=self._retry_policy,
        )
