"""Leases: one active holder per single-active part (relay, each view, saga runner).

A lease is a row of ``leases`` (name, holder, fencing token, expiry) in the event
store's database, taken when it has lapsed and renewed on a short interval; expiry is
decided by the database's clock, never a host's. Every write a holder makes that moves
its position (a view's batch, the relay's position, a saga's decision) runs the
lease's :meth:`Lease.fence` in the same transaction: it reads the lease row with
``FOR SHARE`` and fails unless it still names this holder's token unexpired. A taker's
``UPDATE`` of the row waits for that lock, so a write either commits before the
successor starts or fails: a holder that lost its lease, however slow, frozen or
partitioned, writes nothing after its successor began.

The holder also checks its lease locally (a monotonic clock against its last renewal)
before each batch, so that one resumed after a freeze (SIGSTOP) stops before it does
any work, and its lease connection has TCP time-outs, so that a silent cut of its path
to the database is noticed in seconds. See docs/decisions.md, "Leases".
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, NoReturn

import psycopg
from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import DictRow, dict_row

logger = logging.getLogger(__name__)

CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS leases ("
    "name text PRIMARY KEY, holder text NOT NULL, token bigint NOT NULL, "
    "acquired_at timestamptz NOT NULL, renewed_at timestamptz NOT NULL, "
    "expires_at timestamptz NOT NULL)"
)
# Taken when lapsed; each take is a new term with the next token.
ACQUIRE = (
    "INSERT INTO leases AS l (name, holder, token, acquired_at, renewed_at, expires_at) "
    "VALUES (%(name)s, %(holder)s, 1, clock_timestamp(), clock_timestamp(), "
    "clock_timestamp() + %(ttl)s * interval '1 second') "
    "ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, token = l.token + 1, "
    "acquired_at = EXCLUDED.acquired_at, renewed_at = EXCLUDED.renewed_at, "
    "expires_at = EXCLUDED.expires_at WHERE l.expires_at <= clock_timestamp() "
    "RETURNING token"
)
RENEW = (
    "UPDATE leases SET renewed_at = clock_timestamp(), "
    "expires_at = clock_timestamp() + %(ttl)s * interval '1 second' "
    "WHERE name = %(name)s AND holder = %(holder)s AND token = %(token)s "
    "AND expires_at > clock_timestamp() RETURNING token"
)
RELEASE = (
    "UPDATE leases SET expires_at = clock_timestamp() "
    "WHERE name = %(name)s AND holder = %(holder)s AND token = %(token)s"
)
# In a write's transaction, or inside its own statement: a row only while the lease is
# this holder's term, locked against a take-over until the write commits.
FENCE = (
    "SELECT token FROM leases WHERE name = %s AND holder = %s AND token = %s "
    "AND expires_at > clock_timestamp() FOR SHARE"
)
STATUS = (
    "SELECT name, holder, token, "
    "extract(epoch FROM clock_timestamp() - acquired_at)::float AS age_seconds, "
    "extract(epoch FROM expires_at - clock_timestamp())::float AS expires_in_seconds "
    "FROM leases ORDER BY name"
)


class LeaseLostError(RuntimeError):
    """Raised by a write of a holder whose lease lapsed or was taken: nothing written."""


@dataclass(frozen=True)
class LeaseSettings:
    """How long a lease lasts unrenewed, how often it is renewed and a standby looks,
    and how long one lease statement may take (the lease connection's time-outs)."""

    ttl: float = 5.0
    renew_every: float = 1.0
    statement_timeout: float = 2.0


def holder_name(part: str) -> str:
    """This process's name as a holder: host, pid and a nonce (a restart is a new one)."""
    return f"{part}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LeaseConnection:
    """One connection for lease statements, with time-outs that make a silent cut of
    the path to the database fail them within seconds; reopened after any failure."""

    def __init__(self, conninfo: str, settings: LeaseSettings) -> None:
        self.conninfo = conninfo
        self.settings = settings
        self._conn: psycopg.Connection[DictRow] | None = None
        self._lock = threading.Lock()

    def _connection(self) -> psycopg.Connection[DictRow]:
        if self._conn is None or self._conn.closed:
            timeout_ms = int(self.settings.statement_timeout * 1000)
            self._conn = psycopg.connect(
                self.conninfo,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=max(1, int(self.settings.statement_timeout)),
                keepalives=1,
                keepalives_idle=1,
                keepalives_interval=1,
                keepalives_count=2,
                tcp_user_timeout=timeout_ms,
                options=f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms // 2}",
            )
        return self._conn

    def execute(self, statement: str, **params: Any) -> dict[str, Any] | None:
        """The first row ``statement`` returns, or None (as for one that returns no rows:
        a release, a member leaving)."""
        with self._lock:
            try:
                cursor = self._connection().execute(statement, params)
                row = cursor.fetchone() if cursor.description is not None else None
            except psycopg.Error:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                raise
        return row

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None


class Lease:
    """One lease, held or waited for by this process."""

    def __init__(
        self,
        conninfo: str,
        name: str,
        holder: str,
        settings: LeaseSettings = LeaseSettings(),
    ) -> None:
        self.name = name
        self.holder = holder
        self.settings = settings
        self.token: int | None = None
        # Monotonic time of the last renewal the database confirmed.
        self._confirmed = 0.0
        self._db = LeaseConnection(conninfo, settings)
        self.term = threading.Event()
        self.given_up = False
        self.given_up_at = 0.0

    def _execute(self, statement: str, **params: Any) -> dict[str, Any] | None:
        return self._db.execute(statement, name=self.name, **params)

    def close(self) -> None:
        """Close the lease connection."""
        self._db.close()

    def current_holder(self) -> str | None:
        """Who holds the lease now, as the database has it (None: nobody ever did)."""
        row = self._execute("SELECT holder FROM leases WHERE name = %(name)s")
        return str(row["holder"]) if row else None

    def try_acquire(self) -> bool:
        """Take the lease if it has lapsed (or was never taken); whether it was."""
        started = time.monotonic()
        row = self._execute(ACQUIRE, holder=self.holder, ttl=self.settings.ttl)
        if row is None:
            return False
        self.token = int(row["token"])
        self._confirmed = started
        self.term = threading.Event()
        self.given_up = False
        return True

    def renew(self) -> bool:
        """Extend the lease; False when it is no longer this holder's."""
        if self.token is None:
            return False
        started = time.monotonic()
        row = self._execute(RENEW, holder=self.holder, token=self.token, ttl=self.settings.ttl)
        if row is None:
            return False
        self._confirmed = started
        return True

    def release(self) -> None:
        """Give the lease up now (a clean stop), so a standby takes it at once."""
        if self.token is None:
            return
        try:
            self._execute(RELEASE, holder=self.holder, token=self.token)
        except psycopg.Error as error:
            logger.warning("lease %s not released (it lapses on its own): %s", self.name, error)
        self.token = None

    def held_locally(self) -> bool:
        """Whether the last confirmed renewal is recent enough that the lease cannot
        have lapsed yet (with a renewal's margin): decided without the database."""
        margin = self.settings.renew_every
        return (
            self.token is not None
            and not self.term.is_set()
            and time.monotonic() - self._confirmed < self.settings.ttl - margin
        )

    def lost(self, why: str) -> None:
        """End this term: the holder's work stops."""
        if not self.term.is_set():
            logger.warning("lease %s lost (token %s): %s", self.name, self.token, why)
        self.term.set()

    def give_up(self, why: str) -> None:
        """End this term to hand the lease to another process (it is released)."""
        if not self.term.is_set():
            logger.info("lease %s given up by %s: %s", self.name, self.holder, why)
            self.given_up = True
            self.given_up_at = time.monotonic()
        self.term.set()

    def recently_given_up(self) -> bool:
        """Whether this process gave the lease up to balance the shares lately (two
        leases' time): long enough for the process it was meant for to take it."""
        return self.given_up and time.monotonic() - self.given_up_at < 2 * self.settings.ttl

    def guard(self) -> None:
        """Raise :class:`LeaseLostError` unless the lease is held (checked locally): run
        before each batch of work."""
        if not self.held_locally():
            self.lost("not renewed in time")
            raise LeaseLostError(f"{self.holder} no longer holds {self.name}")

    def fence_condition(self) -> tuple[str, list[Any]]:
        """:data:`FENCE` and its parameters, for a write's own statement."""
        return FENCE, [self.name, self.holder, self.token]

    def refused(self) -> NoReturn:
        """A write found the lease taken or lapsed: end the term, and raise."""
        self.lost("a write found the lease taken or lapsed")
        raise LeaseLostError(f"{self.holder} no longer holds {self.name}: nothing written")

    def fence(self, curs: psycopg.Cursor[DictRow]) -> None:
        """In a write's transaction: lock the lease row against a take-over until the
        write commits, and fail the write unless this holder's term is current."""
        curs.execute(*self.fence_condition())
        if curs.fetchone() is None:
            self.refused()

    def keep(self, stop: threading.Event) -> None:
        """Renew every ``renew_every`` s until ``stop`` or the term ends; a renewal
        refused, or none confirmed in time, ends the term."""
        term = self.term
        while not term.wait(self.settings.renew_every):
            if stop.is_set():
                return
            try:
                renewed = self.renew()
            except psycopg.Error as error:
                if not self.held_locally():
                    self.lost(f"cannot renew: {error}")
                continue
            if not renewed:
                self.lost("the database no longer names this holder")


def create_lease_table(datastore: PostgresDatastore) -> None:
    """Create ``leases`` (``boxoffice migrate``)."""
    with datastore.transaction(commit=True) as curs:
        curs.execute(CREATE_TABLE)


def lease_status(datastore: PostgresDatastore) -> list[dict[str, Any]]:
    """Every lease: its holder, token, age and how long until it lapses (negative:
    lapsed, with no holder working)."""
    with datastore.transaction(commit=False) as curs:
        curs.execute(STATUS)
        rows = curs.fetchall()
    return [
        {
            "name": r["name"],
            "holder": r["holder"],
            "token": r["token"],
            "age_seconds": round(r["age_seconds"], 1),
            "expires_in_seconds": round(r["expires_in_seconds"], 1),
        }
        for r in rows
    ]
