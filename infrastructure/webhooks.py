"""Signed webhooks: a command's terminal status, POSTed to its ``Callback-Url``.

The dispatcher follows terminal command events from its own tracked position. Each
delivery is retried with backoff until the receiver answers 2xx (or the attempts run
out, which is logged), and only then is the position advanced: a receiver sees each
command's outcome acknowledged once. A dispatcher that dies after a 2xx but before
advancing delivers again on restart, with the same ``Boxoffice-Delivery`` id, so
receivers can drop the repeat.

Signature: ``Boxoffice-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">``
keyed with ``WEBHOOK_SECRET``; receivers should reject old ``t`` values.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.request
from typing import Any

from eventsourcing.application import Repository
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from application.command import Command
from projections.command_registry import present_command

logger = logging.getLogger(__name__)

TERMINAL_EVENTS = (Command.CommandSucceeded, Command.CommandFailed, Command.CommandDeadLettered)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Boxoffice-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes, tolerance: float = 300) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and is at most ``tolerance`` s old."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    fresh = abs(time.time() - timestamp) <= tolerance
    return fresh and hmac.compare_digest(expected, fields.get("v1", ""))


class WebhookDispatcher:
    """Delivers terminal command statuses; runs in the projector like a projection."""

    name = "webhooks"

    def __init__(
        self,
        view: TrackingRecorder,
        repository: Repository[Any],
        secret: str,
        max_attempts: int = 8,
        base_delay: float = 0.5,
        stop: threading.Event | None = None,
    ) -> None:
        self.view = view
        self.repository = repository
        self.secret = secret
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.stop = stop or threading.Event()

    @staticmethod
    def event_topics() -> tuple[str, ...]:
        """The terminal command events."""
        return tuple(get_topic(cls) for cls in TERMINAL_EVENTS)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Deliver the command's outcome if it asked for a callback, then track the event."""
        command: Command = self.repository.get(
            domain_event.originator_id, version=domain_event.originator_version
        )
        if command.callback_url:
            self.deliver(command, f"{command.id}.{command.version}")
        self.view.insert_tracking(tracking)

    def deliver(self, command: Command, delivery_id: str) -> bool:
        """POST the command's document until a 2xx or the attempts run out."""
        assert command.callback_url is not None
        body = json.dumps(present_command(command)).encode()
        for attempt in range(1, self.max_attempts + 1):
            timestamp = int(time.time())
            request = urllib.request.Request(  # noqa: S310 - the URL's scheme is checked at accept
                command.callback_url,
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "boxoffice-webhooks",
                    "Boxoffice-Delivery": delivery_id,
                    "Boxoffice-Signature": sign(self.secret, timestamp, body),
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    if 200 <= response.status < 300:
                        return True
                    outcome = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                outcome = f"HTTP {error.code}"
            except OSError as error:
                outcome = repr(error)
            logger.warning("webhook %s attempt %d: %s", delivery_id, attempt, outcome)
            if self.stop.wait(min(30.0, self.base_delay * 2 ** (attempt - 1))):
                raise InterruptedError("stopping")
        logger.error("webhook %s undelivered after %d attempts", delivery_id, self.max_attempts)
        return False
