"""The dispatcher: terminal command statuses into the outbox, in the projector."""

from __future__ import annotations

import json
from typing import Any

from eventsourcing.application import Repository
from eventsourcing.persistence import Tracking
from eventsourcing.utils import get_topic

from application.command import Command
from infrastructure.webhooks.outbox import Delivery, WebhookOutbox
from projections.command_registry import present_command

TERMINAL_EVENTS = (Command.CommandSucceeded, Command.CommandFailed, Command.CommandDeadLettered)


class WebhookDispatcher:
    """Puts terminal command statuses in the outbox; runs in the projector."""

    name = "webhooks"

    def __init__(self, view: WebhookOutbox, repository: Repository[Any]) -> None:
        self.view = view
        self.repository = repository

    @staticmethod
    def event_topics() -> tuple[str, ...]:
        """The terminal command events."""
        return tuple(get_topic(cls) for cls in TERMINAL_EVENTS)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Record the command's delivery if it asked for a callback, and the position."""
        command: Command = self.repository.get(
            domain_event.originator_id, version=domain_event.originator_version
        )
        if command.callback_url:
            body = json.dumps(present_command(command)).encode()
            delivery = Delivery(f"{command.id}.{command.version}", command.callback_url, body, 0)
            self.view.enqueue(delivery, tracking)
        else:
            self.view.insert_tracking(tracking)
