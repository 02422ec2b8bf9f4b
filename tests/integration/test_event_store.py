"""The event store's connection pools on PostgreSQL: a ping a second, not one per checkout."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from infrastructure.event_store import IdlePing, build_application, migrate
from infrastructure.settings import Settings

pytestmark = pytest.mark.postgres


def test_a_connection_is_pinged_once_a_second_not_at_every_checkout(database_url: str) -> None:
    settings = Settings(database_url=database_url, db_pool_size=1, db_max_overflow=0)
    migrate(settings)
    app = build_application(settings)
    datastore: Any = app.recorder
    pool: Any = datastore.datastore.pool
    assert isinstance(pool._check, IdlePing)
    pings: list[float] = []
    check = pool._check._check

    def counted(conn: Any) -> None:
        pings.append(time.monotonic())
        check(conn)

    pool._check._check = counted
    for _ in range(20):
        with datastore.datastore.get_connection() as conn:
            conn.execute("SELECT 1")
    quick = len(pings)
    time.sleep(1.1)
    with datastore.datastore.get_connection() as conn:
        conn.execute("SELECT 1")
    app.close()

    assert quick <= 1  # the first checkout of a new connection, at most
    assert len(pings) == quick + 1


def test_a_connection_the_server_dropped_is_replaced_at_checkout(database_url: str) -> None:
    settings = Settings(database_url=database_url, db_pool_size=1, db_max_overflow=0)
    migrate(settings)
    app = build_application(settings)
    datastore: Any = app.recorder.datastore  # type: ignore[attr-defined]
    with datastore.get_connection() as conn:
        backend = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
    time.sleep(1.1)  # past the ping interval: the next checkout pings, and replaces it
    with datastore.get_connection() as conn:
        replaced = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
    app.close()

    assert replaced != backend
