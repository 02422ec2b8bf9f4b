"""The eventsourcing configuration for PostgreSQL: the application, its views and
trackers, each with a pool that connects on first use.

Every process starts with ``CREATE_TABLE`` off: tables are created once, by
:func:`infrastructure.schema.migrate`, because concurrent ``CREATE TABLE IF NOT EXISTS``
from many workers fails with "tuple concurrently updated".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID
from weakref import WeakKeyDictionary

import psycopg
from eventsourcing import persistence as es_persistence
from eventsourcing.application import Application
from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresTrackingRecorder,
)
from eventsourcing.utils import Environment
from psycopg.sql import SQL, Identifier

from application.event_log import SNAPSHOT_INTERVAL, BoxofficeApplication
from infrastructure.leased_work import FencedTrackingRecorder
from infrastructure.settings import Settings

TV = TypeVar("TV", bound=PostgresTrackingRecorder)


# What reaching the store can raise when it is down, restarting or out of connections:
# eventsourcing's wrappers of driver errors and psycopg's own (the pool's time-out is
# a psycopg OperationalError).
STORE_UNAVAILABLE: tuple[type[Exception], ...] = (
    es_persistence.OperationalError,
    es_persistence.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def event_store_env(settings: Settings, *, create_table: bool = False) -> dict[str, str]:
    """The eventsourcing environment for the configured PostgreSQL database."""
    db = settings.database
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "APPLICATION_RECORDER_TOPIC": "infrastructure.log_recorder:TransactionOrderedRecorder",
        "POSTGRES_DBNAME": db.dbname,
        "POSTGRES_HOST": db.host,
        "POSTGRES_PORT": str(db.port),
        "POSTGRES_USER": db.user,
        "POSTGRES_PASSWORD": db.password,
        "POSTGRES_POOL_SIZE": str(settings.db_pool_size),
        "POSTGRES_MAX_OVERFLOW": str(settings.db_max_overflow),
        "POSTGRES_CONNECT_TIMEOUT": str(settings.db_connect_timeout),
        "POSTGRES_PRE_PING": "y",
        "CREATE_TABLE": "y" if create_table else "n",
        SNAPSHOT_INTERVAL: str(settings.snapshot_interval),
    }


# A pooled connection checked this recently is handed out without a ping (see IdlePing).
PING_AFTER_SECONDS = 1.0


class IdlePing:
    """The pool's pre-ping, run only on a connection not pinged for ``after`` seconds.

    eventsourcing's pre-ping (``POSTGRES_PRE_PING``) sends a round trip before every
    checkout, so that a connection the server dropped (a restart) is replaced instead of
    failing a query: a quarter of the worker's and the projector's busy time in the
    profile (docs/throughput.md). One ping a second per connection finds every
    connection of a server that went away; a connection used within a second of a ping
    that then fails (the server restarted within that second) fails its query, which
    the recorders retry on another connection and the followers resume from, as after
    any outage.
    """

    def __init__(self, check: Callable[[Any], None], after: float = PING_AFTER_SECONDS) -> None:
        self._check = check
        self._after = after
        self._pinged: WeakKeyDictionary[Any, float] = WeakKeyDictionary()
        self._lock = threading.Lock()

    def __call__(self, conn: Any) -> None:
        """Ping ``conn`` unless it answered one less than ``after`` seconds ago."""
        now = time.monotonic()
        with self._lock:
            pinged = self._pinged.get(conn)
        if pinged is not None and now - pinged < self._after:
            return
        self._check(conn)
        with self._lock:
            self._pinged[conn] = now


def ping_when_idle(datastore: PostgresDatastore) -> None:
    """Make ``datastore``'s pool ping a connection at most once a second (:class:`IdlePing`).

    psycopg_pool takes its check only as a constructor argument, and eventsourcing
    builds the pool: the check is replaced in place (``tests/integration/
    test_event_store.py`` holds psycopg_pool to it).
    """
    pool: Any = datastore.pool
    if pool._check is not None and not isinstance(pool._check, IdlePing):
        pool._check = IdlePing(pool._check)


def build_application(settings: Settings, *, create_table: bool = False) -> BoxofficeApplication:
    """The event-store application; connects lazily, on first use."""
    app = BoxofficeApplication(env=event_store_env(settings, create_table=create_table))
    ping_when_idle(app.recorder.datastore)  # type: ignore[attr-defined]
    app.recorder.group_commits(settings.accept_group_max)  # type: ignore[attr-defined]
    return app


def build_tracker(
    settings: Settings, name: str, *, create_table: bool = False
) -> FencedTrackingRecorder:
    """A tracking recorder whose table is ``{name}_tracking``, in the event store's
    database; its writes are fenced by a lease once one is given (``fence``)."""
    return build_view(settings, name, FencedTrackingRecorder, create_table=create_table)


def build_view(
    settings: Settings, name: str, view_class: type[TV], *, create_table: bool = False
) -> TV:
    """A view (a tracking recorder) named ``name``, with its own connection pool."""
    env = Environment(name, event_store_env(settings, create_table=create_table))
    factory = InfrastructureFactory[TV].construct(env=env)
    view = factory.tracking_recorder(view_class)
    ping_when_idle(view.datastore)
    return view


def view_on(datastore: PostgresDatastore, name: str, view_class: type[TV]) -> TV:
    """A view named ``name`` sharing ``datastore``'s pool (for reads in the web process)."""
    return view_class(datastore=datastore, tracking_table_name=f"{name}_tracking")


def ping(settings: Settings, timeout: int = 2) -> None:
    """Raise unless the event store's database answers within ``timeout`` seconds.

    A direct connection, not the application's pool: eventsourcing retries reads for
    seconds, which is right for commands and wrong for a health probe.
    """
    with psycopg.connect(settings.database.url(), connect_timeout=timeout) as conn:
        conn.execute("SELECT 1")


def position_of(app: Application[Any], aggregate_id: UUID) -> int | None:
    """The event-log position of ``aggregate_id``'s latest event; None off PostgreSQL."""
    recorder = app.recorder
    if not isinstance(recorder, PostgresApplicationRecorder):
        return None
    statement = SQL("SELECT max(notification_id) AS position FROM {0}.{1} WHERE originator_id = %s")
    # One statement on the pool's autocommit connection, as a view's read: a transaction
    # around it would add a BEGIN and a ROLLBACK to every synchronous answer.
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(
            statement.format(
                Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name)
            ),
            (aggregate_id,),
        )
        row = curs.fetchone()
    return int(row["position"]) if row and row["position"] is not None else None
