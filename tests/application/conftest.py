"""The pipeline's stories run on the in-memory (POPO) store and on PostgreSQL.

As in eventsourcing's own tests: one test case, the store chosen by the fixture's
parameter. The PostgreSQL run needs ``TEST_DATABASE_URL`` (``make test`` provides it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from application.event_log import BoxofficeApplication
from application.pipeline import CommandPipeline
from application.retry import RetryPolicy
from application.slices import build_catalog
from infrastructure.event_store import build_application
from infrastructure.settings import Settings
from interfaces.bootstrap import Container, bootstrap, migrate
from interfaces.http import create_app
from tests.support import commands as test_commands


@pytest.fixture(params=["popo", pytest.param("postgres", marks=pytest.mark.postgres)])
def app(request: pytest.FixtureRequest) -> Iterator[BoxofficeApplication]:
    if request.param == "popo":
        app = BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    else:
        settings = Settings(database_url=request.getfixturevalue("database_url"))
        migrate(settings)
        app = build_application(settings)
    yield app
    app.close()


@pytest.fixture
def pipeline(app: BoxofficeApplication) -> CommandPipeline:
    catalog = build_catalog()
    test_commands.register(catalog)
    return CommandPipeline(app, catalog, RetryPolicy(max_attempts=3, base_delay=0.01))


def make_container(app: BoxofficeApplication, **settings: Any) -> Container:
    """The service over ``app``, with the test commands registered."""
    return bootstrap(
        Settings(command_modules=("tests.support.commands",), **settings), application=app
    )


@pytest.fixture
def container(app: BoxofficeApplication) -> Container:
    return make_container(app)


@pytest.fixture
def client(container: Container) -> Iterator[FlaskClient]:
    yield create_app(container).test_client()
    container.close()
