"""The transactional outbox relay: publishes what the event store says must run.

Nothing reaches the broker except through here. The relay follows the event log from
its tracked position (woken by PostgreSQL LISTEN/NOTIFY), publishes each accepted,
retry-scheduled or re-driven command with publisher confirms, then advances its
position, once for the events a read returned. A crash between publish and tracking
publishes those messages again, which the workers recognise as duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from application import log_context
from application.command import Command
from application.ports import CommandTransport
from infrastructure import tracing
from infrastructure.stall_log import StallLog

logger = logging.getLogger(__name__)

PUBLISHED = (Command.CommandAccepted, Command.CommandRetryScheduled, Command.CommandRedriven)


class OutboxRelay:
    """Follows the event log and publishes the commands that are due to run."""

    name = "relay"
    # Each publish opens its own span under the event's: no span per event taken too.
    traces_itself = True

    def __init__(
        self,
        app: Application[Any],
        tracker: TrackingRecorder,
        transport: CommandTransport,
        stalls: StallLog | None = None,
    ) -> None:
        self.app = app
        self.view = tracker
        self.transport = transport
        self.stalls = stalls

    @staticmethod
    def event_topics() -> tuple[str, ...]:
        """The events that call for a message."""
        return tuple(get_topic(cls) for cls in PUBLISHED)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Publish, then advance the relay's position."""
        self.publish(domain_event)
        self.view.insert_tracking(tracking)

    def process_events(self, batch: Sequence[tuple[Any, Tracking]]) -> None:
        """Publish each, then advance the position once (a write fewer per message
        while a backlog drains). A failure leaves the position where it was."""
        for event, _ in batch:
            self.publish(event)
        self.view.insert_tracking(batch[-1][1])

    def publish(self, event: Any) -> None:
        """Publish the message that ``event`` calls for."""
        # Only the first event of a command says its correlation and causation; a retry
        # or a re-drive (a few of the messages) reads it back.
        accepted = (
            event
            if isinstance(event, Command.CommandAccepted)
            else self.app.repository.get(event.originator_id, version=1)
        )
        # Under the span recorded with the event (a retry's: its failed run's), so
        # that Celery's instrumentation carries that trace in the message's headers.
        parent = getattr(event, "traceparent", None) or accepted.traceparent
        with (
            log_context.bound(**log_context.of_command(accepted)),
            tracing.span(f"publish {accepted.command_type}", parent),
        ):
            self._publish(event)

    def _publish(self, event: Any) -> None:
        if isinstance(event, Command.CommandAccepted):
            self.transport.publish(event.originator_id, 1)
        elif isinstance(event, Command.CommandRetryScheduled):
            self.transport.publish(event.originator_id, event.attempt + 1, eta=event.retry_at)
        elif isinstance(event, Command.CommandRedriven):
            self.transport.publish(event.originator_id, event.next_attempt)
        logger.debug("published %s for %s", type(event).__name__, event.originator_id)
