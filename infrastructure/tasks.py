"""The Celery task: deserialize, run the pipeline, classify what happened."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from celery import Celery, Task
from celery.signals import worker_process_init
from eventsourcing.persistence import PersistenceError

from application import log_context
from application.pipeline import CommandPipeline
from infrastructure import heap
from infrastructure.celery_app import EXECUTE_TASK, PUBLISHED_AT, TRACEPARENT

logger = logging.getLogger(__name__)


def register_tasks(
    celery: Celery, pipeline: Callable[[], CommandPipeline], after_fork: Callable[[], None]
) -> None:
    """Register the execute task; ``pipeline`` is built per process, after the fork."""

    @celery.task(name=EXECUTE_TASK, bind=True, max_retries=None, acks_late=True)
    def execute(
        self: Task,  # type: ignore[type-arg]
        command_id: str,
        attempt: int,
        takeover: bool = False,
    ) -> str:
        worker = f"{socket.gethostname()}:{os.getpid()}"
        # The command's timeline shows when its message was sent and taken.
        delivered = {"received_at": datetime.now(UTC).isoformat()}
        published_at = getattr(self.request, PUBLISHED_AT, None)
        if isinstance(published_at, str):
            delivered["published_at"] = published_at
        traceparent = getattr(self.request, TRACEPARENT, None)
        with log_context.bound(command_id=command_id):
            return _execute(
                self,
                command_id,
                int(attempt),
                worker,
                takeover,
                delivered,
                traceparent if isinstance(traceparent, str) else None,
            )

    def _execute(
        self: Task,  # type: ignore[type-arg]
        command_id: str,
        attempt: int,
        worker: str,
        takeover: bool,
        delivered: dict[str, str],
        traceparent: str | None,
    ) -> str:
        try:
            # The broker redelivers a message whose consumer went away; the sweeper
            # publishes a takeover for a run with no sign of life past its lease.
            redelivered = takeover or bool((self.request.delivery_info or {}).get("redelivered"))
            outcome = pipeline().execute(
                UUID(command_id), attempt, worker, redelivered, delivered, traceparent
            )
        except PersistenceError as error:
            # The event store could not record even the outcome: keep the message
            # and try again later, so nothing accepted is dropped.
            logger.warning("event store unavailable for %s: %r", command_id, error)
            countdown = min(30, 2 ** min(self.request.retries, 5))
            raise self.retry(exc=error, countdown=countdown) from error
        return outcome.value

    def reconnect(**_: object) -> None:
        after_fork()
        heap.settled()

    worker_process_init.connect(reconnect, weak=False)
