"""Fixtures shared by every layer of tests.

Integration and e2e tests need ``TEST_DATABASE_URL`` and ``TEST_BROKER_URL`` (``make
test`` provides both). Locally they skip when those are absent; in CI (``CI`` set) they
fail instead, so a missing server can never pass as a green run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from flask.testing import FlaskClient

from application.event_log import BoxofficeApplication
from infrastructure.event_store import build_application
from infrastructure.settings import DatabaseUrl, Settings
from interfaces.bootstrap import Container, migrate
from interfaces.http import create_app
from tests.support.service import make_container


def _require(variable: str) -> str:
    value = os.environ.get(variable)
    if value:
        return value
    message = f"{variable} is not set: run `make test`, which starts the servers"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def server_database_url() -> str:
    """The PostgreSQL server the integration tests use."""
    return _require("TEST_DATABASE_URL")


@pytest.fixture(scope="session")
def broker_url() -> str:
    """The RabbitMQ broker the integration tests use."""
    return _require("TEST_BROKER_URL")


@contextmanager
def fresh_database(server_database_url: str) -> Iterator[str]:
    """A new, empty database on the test server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    server = DatabaseUrl.parse(server_database_url)
    admin = server.url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield DatabaseUrl(
            dbname=name,
            host=server.host,
            port=server.port,
            user=server.user,
            password=server.password,
        ).url()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(server_database_url: str) -> Iterator[str]:
    """A fresh, empty database for one test."""
    with fresh_database(server_database_url) as url:
        yield url


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The settings of a fresh database with every table created (``boxoffice migrate``)."""
    settings = Settings(database_url=database_url)
    migrate(settings)
    return settings


@pytest.fixture
def queue_name() -> str:
    """A command queue of this test's own, so tests sharing the broker do not mix."""
    return f"test.{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["popo", pytest.param("postgres", marks=pytest.mark.postgres)])
def app(request: pytest.FixtureRequest) -> Iterator[BoxofficeApplication]:
    """The event-store application: in memory (POPO), and on a migrated PostgreSQL."""
    if request.param == "popo":
        app = BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    else:
        app = build_application(request.getfixturevalue("settings"))
    yield app
    app.close()


@pytest.fixture
def container(app: BoxofficeApplication) -> Container:
    """The service over ``app``, with the test commands registered."""
    return make_container(app)


@pytest.fixture
def client(container: Container) -> Iterator[FlaskClient]:
    """A Flask test client of the service."""
    yield create_app(container).test_client()
    container.close()
