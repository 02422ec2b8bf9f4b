"""Integration tests: real PostgreSQL, RabbitMQ and Celery worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from application.command import Command
from application.submission import Acceptance
from infrastructure.settings import Settings
from interfaces.bootstrap import Container, bootstrap, migrate
from tests.support.processes import ServiceProcess, service_env
from tests.support.submit import submit


class Stack:
    """An event store and broker of one test, the in-process client, and process factories."""

    def __init__(
        self, database_url: str, broker_url: str, queue: str, log_dir: Path, **settings: Any
    ) -> None:
        self.database_url = database_url
        self.broker_url = broker_url
        self.queue = queue
        self.log_dir = log_dir
        self.settings = Settings(
            database_url=database_url,
            broker_url=broker_url,
            command_queue=queue,
            command_modules=("tests.support.commands",),
            **settings,
        )
        migrate(self.settings)
        self.container: Container = bootstrap(self.settings)

    def env(self, **extra: str) -> dict[str, str]:
        return service_env(self.database_url, self.broker_url, self.queue, **extra)

    def process(self, part: str, name: str = "", **extra: str) -> ServiceProcess:
        return ServiceProcess(part, self.env(**extra), self.log_dir, name=name)

    def submit(
        self, command_type: str, idempotency_key: str | None = None, **payload: Any
    ) -> Acceptance:
        return submit(self.container.pipeline, command_type, idempotency_key, **payload)

    def command(self, command_id: UUID) -> Command:
        found = self.container.pipeline.get_command(command_id)
        assert found is not None
        return found

    def outcome(self, command_id: UUID, timeout: float = 30) -> Command:
        """Wait (pushed by LISTEN/NOTIFY, like Prefer: wait) for the command's outcome."""
        decided = self.container.watcher.wait(
            command_id, timeout, lambda: self.command(command_id).is_terminal
        )
        command = self.command(command_id)
        assert decided, f"no outcome after {timeout} s: {command.status} {command.attempts}"
        return command


@pytest.fixture
def stack(database_url: str, broker_url: str, queue_name: str, tmp_path: Path) -> Iterator[Stack]:
    built = Stack(database_url, broker_url, queue_name, tmp_path)
    yield built
    built.container.close()
