"""Ports the application declares and the infrastructure implements."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from uuid import UUID


class CommandTransport(Protocol):
    """Carries "run attempt N of command C" to the workers (Celery over RabbitMQ)."""

    def publish(self, command_id: UUID, attempt: int, eta: datetime | None = None) -> None:
        """Hand the message to the broker; returns once the broker has confirmed it."""
        ...
