"""The pipeline's stories run on the in-memory (POPO) store and on PostgreSQL.

As in eventsourcing's own tests: one test case, the store chosen by the ``app``
fixture's parameter (``tests/conftest.py``). The PostgreSQL run needs
``TEST_DATABASE_URL`` (``make test`` provides it).
"""

from __future__ import annotations

import pytest

from application.event_log import BoxofficeApplication
from application.pipeline import CommandPipeline
from application.retry import RetryPolicy
from application.slices import build_catalog
from tests.support import commands as test_commands


@pytest.fixture
def pipeline(app: BoxofficeApplication) -> CommandPipeline:
    catalog = build_catalog()
    test_commands.register(catalog)
    return CommandPipeline(app, catalog, RetryPolicy(max_attempts=3, base_delay=0.01))
