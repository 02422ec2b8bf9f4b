"""Work done under a lease: the standby loop, the guard before each batch, the fenced
position writes, and the shares of a part whose leases several processes split.

:func:`run_leased` is how a single-active part runs: as a standby until its lease
lapses, then working until it loses the lease or is stopped. :class:`Shares` spreads
the leases of one part (the projector's views) over the processes running it: each
takes at most its share, ``ceil(leases / live members)``, and gives up what it holds
beyond that when another process joins, so that two projectors apply half the views
each, and one takes all of them again when the other is gone.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import psycopg
from eventsourcing.persistence import Tracking
from psycopg.rows import DictRow

from application.segment import WHOLE
from infrastructure.lease import Lease, LeaseConnection, LeaseSettings
from projections.document_view import SegmentedTracking

logger = logging.getLogger(__name__)

CREATE_MEMBERS = (
    "CREATE TABLE IF NOT EXISTS lease_members (part text NOT NULL, member text NOT NULL, "
    "expires_at timestamptz NOT NULL, PRIMARY KEY (part, member))"
)
HEARTBEAT = (
    "INSERT INTO lease_members VALUES (%(part)s, %(member)s, "
    "clock_timestamp() + %(ttl)s * interval '1 second') "
    "ON CONFLICT (part, member) DO UPDATE SET expires_at = EXCLUDED.expires_at "
    "RETURNING (SELECT count(*) FROM lease_members WHERE part = %(part)s "
    "AND member <> %(member)s AND expires_at > clock_timestamp()) + 1 AS members"
)
LEAVE = "DELETE FROM lease_members WHERE part = %(part)s AND member = %(member)s"


class Shares:
    """The leases of one ``part`` that the processes running it split between them."""

    def __init__(
        self, conninfo: str, part: str, member: str, total: int, settings: LeaseSettings
    ) -> None:
        self.part = part
        self.member = member
        self.total = total
        self.settings = settings
        self.members = 1
        self._held: list[Lease] = []
        self._lock = threading.Lock()
        self._db = LeaseConnection(conninfo, settings)

    @property
    def share(self) -> int:
        """How many leases this process may hold."""
        return math.ceil(self.total / max(1, self.members))

    def may_take(self) -> bool:
        """Whether this process holds less than its share."""
        with self._lock:
            return len(self._held) < self.share

    def took(self, lease: Lease) -> None:
        """``lease`` is held."""
        with self._lock:
            self._held.append(lease)

    def let_go(self, lease: Lease) -> None:
        """``lease`` is no longer held."""
        with self._lock:
            if lease in self._held:
                self._held.remove(lease)

    def run(self, stop: threading.Event) -> None:
        """Say this process is a member every renewal interval, count the members, and
        give up the leases held beyond the share (the last taken first)."""
        while not stop.is_set():
            try:
                row = self._db.execute(
                    HEARTBEAT, part=self.part, member=self.member, ttl=self.settings.ttl
                )
            except psycopg.Error as error:
                logger.warning("%s: cannot count the members: %s", self.part, error)
            else:
                self.members = int(row["members"]) if row else 1
                self._give_up_extra()
            stop.wait(self.settings.renew_every)
        try:
            self._db.execute(LEAVE, part=self.part, member=self.member)
        except psycopg.Error as error:
            logger.warning("%s: not left (it lapses on its own): %s", self.part, error)
        self._db.close()

    def _give_up_extra(self) -> None:
        with self._lock:
            extra = self._held[self.share :]
        for lease in extra:
            lease.give_up(f"{self.members} members share {self.total}: {self.share} each")


def create_members_table(conn: Any) -> None:
    """Create ``lease_members`` (``boxoffice migrate``), on a cursor or connection."""
    conn.execute(CREATE_MEMBERS)


def run_leased(
    lease: Lease,
    work: Callable[[threading.Event], None],
    stop: threading.Event,
    shares: Shares | None = None,
) -> None:
    """Run ``work`` while ``lease`` is held, until ``stop``: wait (as a standby, saying
    who holds the lease) until it lapses, take it, run ``work`` with an event set when
    the lease is lost, given up or ``stop`` is set, and after that wait again. With
    ``shares``, a lease given up to balance them is taken again only while this process
    holds less than its share."""
    waiting_for: str | None = None
    while not stop.is_set():
        # A lease this process just gave up to balance the shares waits until its share
        # allows it again; any lease another holder lost is taken at once (a fail-over
        # is not held back to keep the shares even: the next balancing evens them).
        if shares is not None and lease.recently_given_up() and not shares.may_take():
            stop.wait(lease.settings.renew_every)
            continue
        try:
            acquired = lease.try_acquire()
        except psycopg.Error as error:
            logger.warning("lease %s: cannot reach the database: %s", lease.name, error)
            stop.wait(lease.settings.renew_every)
            continue
        if not acquired:
            holder = _holder_of(lease)
            if holder != waiting_for:
                logger.info(
                    "lease %s is held by %s: %s waits as a standby",
                    lease.name,
                    holder,
                    lease.holder,
                )
                waiting_for = holder
            stop.wait(lease.settings.renew_every)
            continue
        waiting_for = None
        logger.info("lease %s taken by %s (token %s)", lease.name, lease.holder, lease.token)
        term = lease.term
        threading.Thread(target=_end_with, args=(stop, term), daemon=True).start()
        keeper = threading.Thread(target=lease.keep, args=(stop,), name=f"lease-{lease.name}")
        keeper.start()
        if shares is not None:
            shares.took(lease)
        try:
            work(term)
        finally:
            term.set()
            keeper.join()
            if shares is not None:
                shares.let_go(lease)
        if stop.is_set() or lease.given_up:
            lease.release()
    lease.close()


class PartFailedError(RuntimeError):
    """A thread of a part ended with an error: the part stops (its leases released), and
    its process exits for its supervisor (``boxoffice serve``, systemd) to start again."""


def run_together(jobs: Sequence[tuple[str, Callable[[], None]]], stop: threading.Event) -> None:
    """Run each ``(name, job)`` in a thread of its own until every one has ended.

    The first job to fail sets ``stop``, so that the others end and give their leases
    back, and :class:`PartFailedError` is raised once all have ended. A process that lost one
    of its threads and lived on would stay a member of its part's shares, with a share of
    leases that nobody works: a segment of the sagas that no one decides on.
    """
    failures: list[tuple[str, BaseException]] = []

    def guarded(name: str, job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as error:  # reported below: the part ends
            logger.exception("%s failed: the part stops", name)
            failures.append((name, error))
            stop.set()

    threads = [threading.Thread(target=guarded, args=job, name=job[0]) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        name, error = failures[0]
        raise PartFailedError(f"{name} failed: {error}") from error


def _end_with(stop: threading.Event, term: threading.Event) -> None:
    while not term.wait(0.2):
        if stop.is_set():
            term.set()


def _holder_of(lease: Lease) -> str:
    try:
        return lease.current_holder() or "(none)"
    except psycopg.Error:
        return "(unknown)"


class LeaseFence:
    """A lease as the views' ``Fence``: a check in a write's transaction, or in its
    one statement."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease

    def __call__(self, curs: psycopg.Cursor[DictRow]) -> None:
        """Check in ``curs``'s transaction."""
        self.lease.fence(curs)

    def condition(self) -> tuple[str, list[Any]]:
        """The check, for a write's own statement."""
        return self.lease.fence_condition()

    def refused(self) -> NoReturn:
        """The check found no row: nothing was written."""
        self.lease.refused()


class FencedTrackingRecorder(SegmentedTracking):
    """A tracking recorder whose position writes are fenced by ``fence``, when set."""

    fence: Callable[[psycopg.Cursor[DictRow]], None] | None = None

    def _insert_tracking(self, curs: psycopg.Cursor[DictRow], tracking: Tracking) -> None:
        if self.fence is not None:
            self.fence(curs)
        super()._insert_tracking(curs, tracking)


class Guarded:
    """A follower whose every batch first checks its lease (:meth:`Lease.guard`)."""

    def __init__(self, follower: Any, lease: Lease) -> None:
        self.follower = follower
        self.lease = lease
        self.name = follower.name
        self.view = follower.view
        self.segment = getattr(follower, "segment", WHOLE)
        self.follows_causes = getattr(follower, "follows_causes", False)
        self.traces_itself = getattr(follower, "traces_itself", False)
        if hasattr(follower, "process_events"):
            self.process_events = self._process_events

    def event_topics(self) -> tuple[str, ...]:
        """The follower's topics."""
        return tuple(self.follower.event_topics())

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """The follower's, once the lease is known to be held."""
        self.lease.guard()
        self.follower.process_event(domain_event, tracking)

    def _process_events(self, batch: Sequence[tuple[Any, Tracking]]) -> None:
        self.lease.guard()
        self.follower.process_events(batch)
