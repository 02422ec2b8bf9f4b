"""The transactional outbox relay: publishes what the event store says must run.

A command's first message is sent by the process that accepted it, right after the
commit (``infrastructure/direct_publish.py``). The relay follows the event log from
its tracked positions (woken by PostgreSQL LISTEN/NOTIFY) in two followers:

- :class:`OutboxRelay` publishes each retry-scheduled or re-driven command;
- :class:`SafetyNet` reads each accept a grace period after it was made and publishes
  those that its process left unpublished (it died between commit and publish, or the
  broker was away), as takeovers: such a run takes the command's lease first, so that
  a command never runs twice without one.

Both publish with publisher confirms, then advance their position, once for the
events a read returned. A crash between publish and tracking publishes those messages
again, which the workers recognise as duplicates. docs/design.md, "The outbox's contract".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from itertools import takewhile
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from application import log_context
from application.command import Command
from application.ports import CommandTransport
from infrastructure import tracing
from infrastructure.direct_publish import PublishedMarks
from infrastructure.stall_log import StallLog

logger = logging.getLogger(__name__)

PUBLISHED = (Command.CommandRetryScheduled, Command.CommandRedriven)
# The table of the safety net's position (``relay_net_tracking``).
SAFETY_NET_TRACKER = "relay_net"
# How often the safety net removes the marks of messages published after it passed.
FORGET_EVERY = 60.0


class _Publishing:
    """What the relay's two followers share: the log they follow, where they keep their
    position, the transport they publish to, and what counts their messages."""

    # Each publish opens its own span under the event's: no span per event taken too.
    traces_itself = True

    def __init__(
        self,
        app: Application[Any],
        tracker: TrackingRecorder,
        transport: CommandTransport,
        stalls: StallLog | None = None,
        counted: Callable[[str], None] = lambda source: None,
    ) -> None:
        self.app = app
        self.view = tracker
        self.transport = transport
        self.stalls = stalls
        self.counted = counted


class OutboxRelay(_Publishing):
    """Follows the event log and publishes the commands due to run again (retries and
    re-drives)."""

    name = "relay"

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
        _under_its_span(self.app, event, lambda: self._publish(event))

    def _publish(self, event: Any) -> None:
        if isinstance(event, Command.CommandRetryScheduled):
            self.transport.publish(event.originator_id, event.attempt + 1, eta=event.retry_at)
            self.counted("retry")
        elif isinstance(event, Command.CommandRedriven):
            self.transport.publish(event.originator_id, event.next_attempt)
            self.counted("redrive")
        logger.debug("published %s for %s", type(event).__name__, event.originator_id)


class SafetyNet(_Publishing):
    """Publishes, as takeovers, the accepts left unpublished by the process that made
    them, ``grace`` seconds after they were made (by the accepting host's clock, which
    is to be within a fraction of ``grace`` of this one's).

    ``stop`` (set when the relay's term ends) cuts a wait short, leaving the position
    where it was.
    """

    name = "relay-net"

    def __init__(
        self,
        app: Application[Any],
        tracker: TrackingRecorder,
        transport: CommandTransport,
        marks: PublishedMarks | None,
        grace: float,
        stalls: StallLog | None = None,
        counted: Callable[[str], None] = lambda source: None,
    ) -> None:
        super().__init__(app, tracker, transport, stalls, counted)
        self.marks = marks
        self.grace = grace
        self.stop = threading.Event()
        self._forgotten_at = time.monotonic()

    @staticmethod
    def event_topics() -> tuple[str, ...]:
        """The accepts."""
        return (get_topic(Command.CommandAccepted),)

    def seed(self, relay: TrackingRecorder) -> None:
        """Start where ``relay`` (the relay's own tracker) is, on the first run: a relay
        of an earlier release published every accept up to its position."""
        name = self.app.name
        if self.view.max_tracking_id(name) is None:
            position = relay.max_tracking_id(name)
            if position:
                self.view.insert_tracking(Tracking(name, position))

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """As :meth:`process_events`, for one."""
        self.process_events([(domain_event, tracking)])

    def process_events(self, batch: Sequence[tuple[Any, Tracking]]) -> None:
        """Publish the accepts of ``batch`` that nobody marked published, each once it
        is ``grace`` old, then advance the position once."""
        waiting = [event for event, _ in batch]
        while waiting:
            wait = min(self._due(waiting[0]) - time.time(), self.grace)
            if wait > 0 and self.stop.wait(wait):
                return  # the term ended: the next relay takes them from the position
            # In log order (the first one at least: its wait is over, whatever its clock).
            ready = waiting[:1] + list(takewhile(self._is_due, waiting[1:]))
            waiting = waiting[len(ready) :]
            self._publish_unmarked(ready)
        self.view.insert_tracking(batch[-1][1])
        self._forget_now_and_then()

    def _due(self, event: Any) -> float:
        return float(event.timestamp.timestamp()) + self.grace

    def _is_due(self, event: Any) -> bool:
        # Those due within a tenth of the grace go with the first: one statement for
        # the marks of a while, not one per accept. Early enough to be safe: the
        # accepting process has given up on a message, and marked what it sent, long
        # before (docs/design.md, "The outbox's contract").
        return self._due(event) <= time.time() + self.grace / 10

    def _publish_unmarked(self, accepts: list[Any]) -> None:
        ids = [event.originator_id for event in accepts]
        marked = self.marks.take(ids) if self.marks is not None else set()
        for event in accepts:
            if event.originator_id not in marked:
                _under_its_span(self.app, event, partial(self._publish, event))
            elif logger.isEnabledFor(logging.DEBUG):
                with log_context.bound(**log_context.of_command(event)):
                    logger.debug("%s was published where it was accepted", event.originator_id)

    def _publish(self, event: Any) -> None:
        self.transport.publish(event.originator_id, 1, takeover=True)
        self.counted("safety_net")
        logger.info("published %s, left unpublished where it was accepted", event.originator_id)

    def _forget_now_and_then(self) -> None:
        if self.marks is None or time.monotonic() - self._forgotten_at < FORGET_EVERY:
            return
        self._forgotten_at = time.monotonic()
        self.marks.forget(older_than=max(self.grace * 10, FORGET_EVERY))


def _under_its_span(app: Application[Any], event: Any, publish: Callable[[], None]) -> None:
    """``publish`` under the command's log fields and a span under the one recorded with
    ``event`` (a retry's: its failed run's), whose ``traceparent`` the message's headers
    carry to the worker."""
    # Only the first event of a command says its correlation and causation; a retry or
    # a re-drive (a few of the messages) reads it back.
    accepted = (
        event
        if isinstance(event, Command.CommandAccepted)
        else app.repository.get(event.originator_id, version=1)
    )
    parent = getattr(event, "traceparent", None) or accepted.traceparent
    with (
        log_context.bound(**log_context.of_command(accepted)),
        tracing.span(f"publish {accepted.command_type}", parent, kind="producer"),
    ):
        publish()
