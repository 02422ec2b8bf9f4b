"""The pipeline on the in-memory (POPO) event store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from application.commands import build_registry
from application.pipeline import BoxofficeApplication, CommandPipeline
from application.retry import RetryPolicy
from tests.support import commands as test_commands


@pytest.fixture
def app() -> Iterator[BoxofficeApplication]:
    app = BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


@pytest.fixture
def pipeline(app: BoxofficeApplication) -> CommandPipeline:
    registry = build_registry()
    test_commands.register(registry)
    return CommandPipeline(app, registry, RetryPolicy(max_attempts=3, base_delay=0.01))
