"""Admission control: a command is accepted only while the backlog can drain in time.

Each web process reads the backlog (commands accepted and not yet decided), how many
commands were decided lately and how many shed commands were promised room, at most
every :attr:`Admission.refresh` seconds, and decides from that reading alone. Past
:data:`AIM` of ``max_backlog_seconds`` of work (the backlog over the drain rate) it sheds
new commands with the time the backlog needs to fall back under that, and keeps their
room for then (a ticket); otherwise it admits them with the expected time to their
outcome. Both go out as ``Retry-After``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)

# How far back the drain rate is measured, at most (seconds).
DRAIN_WINDOW = 10.0
# Nor less than this: a backlog a second old is measured over its second.
SHORTEST_WINDOW = 1.0
# A shed command is never told to wait more than this many times the limit (a reading
# of a rate near zero would say hours).
LONGEST_RETRY = 30
# The tickets due within this many seconds hold their room against new commands: their
# holders are on their way. Those due later do not, so that an empty backlog is not
# kept empty for clients still minutes away, or late.
PROMISE_HORIZON = 2.0
# The share of the limit's worth of work admitted (``max_backlog_seconds`` is a bound,
# not a setpoint). The drain read before shedding starts is the drain without
# shedding's own cost, and it falls once shedding starts: at three times capacity on
# two cores, from 164 to 100 commands a second (docs/throughput.md, "Overload: the
# aim"). Admitting up to the whole limit at the rate read first left 17.5 s of work
# waiting at a limit of 10.
AIM = 0.6


@dataclass(frozen=True)
class Backlog:
    """One reading of the commands waiting and of how fast they go.

    ``waiting``: accepted and not yet decided; ``oldest_seconds``: how long the oldest of
    them has waited (0 with none); ``drained``: commands decided in the last
    ``window`` seconds."""

    waiting: int
    oldest_seconds: float
    drained: int
    window: float

    @property
    def rate(self) -> float:
        """Commands decided per second over the window."""
        return self.drained / self.window if self.window > 0 else 0.0


class BacklogGauge(Protocol):
    """Reads the backlog (the command registry's, in this service)."""

    def __call__(self, longest_window: float) -> Backlog:
        """The backlog now, its drain counted over the last ``longest_window`` seconds
        or, when the oldest waiting command is younger, since it was accepted (at least
        :data:`SHORTEST_WINDOW`)."""
        ...


@dataclass(frozen=True)
class Admitted:
    """The command may be accepted; ``retry_after``: seconds to its expected outcome."""

    retry_after: int


@dataclass(frozen=True)
class Shed:
    """The command is refused for now: the backlog holds more than ``limit_seconds`` of
    work (what is admitted up to: :data:`AIM` of the limit). ``retry_after``: seconds
    until it is expected to be back under that."""

    retry_after: int
    waiting: int
    rate: float
    limit_seconds: float


@dataclass(frozen=True)
class Ticket:
    """A ticket found for a command: ``due_in`` seconds to its time (negative: past),
    and whether it was ``used`` (it was due and room was given)."""

    due_in: float
    used: bool


class Tickets(Protocol):
    """Where a shed command's time to come back is kept, for every web process."""

    def issue(self, client: str, key: str, due_in: float, spacing: float) -> float:
        """Keep room for ``client``'s command ``key`` in ``due_in`` seconds, or
        ``spacing`` seconds after the last ticket issued (by any web process) if that
        is later; returns the seconds until it is due."""
        ...

    def redeem(self, client: str, key: str, room: bool) -> Ticket | None:
        """The ticket of ``client``'s command ``key`` in date, if any; used up when
        there is ``room``, early or not."""
        ...

    def outstanding(self, within: float) -> int:
        """How many tickets still to be used are due within ``within`` seconds."""
        ...


class Admission:
    """Decides whether a web process accepts one more command (see the module).

    A shed command that has an ``Idempotency-Key`` gets a ticket for the time it is
    told to come back, after the tickets told before it, one drained command apart: a
    client that honours ``Retry-After`` finds its room kept, whichever web process it
    reaches, while new commands are shed as long as the tickets due within
    :data:`PROMISE_HORIZON` fill the backlog. A ticket is used whenever the backlog has
    room, early or late. A holder that comes back on time and finds no room (the drain
    fell behind the schedule) gets a new place at the schedule's end, so that it does
    not take the room of the holders due after it.

    The drain rate read is what the workers did, which is less than what they can do
    while the backlog is nearly empty: the rate that paces the tickets is the last one
    read while the backlog was full enough to keep them busy, or a higher one since.

    ``aim``: the share of ``max_backlog_seconds`` of work admitted up to (:data:`AIM`).
    """

    def __init__(
        self,
        gauge: BacklogGauge | None,
        max_backlog_seconds: float,
        min_backlog: int,
        refresh: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        tickets: Tickets | None = None,
        aim: float = AIM,
    ) -> None:
        self.gauge = gauge
        self.max_backlog_seconds = max_backlog_seconds
        # The seconds of work admitted up to.
        self.aimed_seconds = max_backlog_seconds * aim
        self.min_backlog = min_backlog
        self.refresh = refresh
        self.clock = clock
        self.tickets = tickets
        self._reading: Backlog | None = None
        self._read_at = -math.inf
        # The drain rate while busy (see the class), commands per second.
        self._capacity = 0.0
        # Tickets due soon when last read; tickets due soon issued and commands admitted
        # by this process since (the reading does not have them yet).
        self._promised = 0
        self._issued = 0
        self._admitted = 0
        # One thread reads at a time (the others decide on the last reading); the
        # counters have their own lock, so that an admit never waits on a read.
        self._lock = threading.Lock()
        self._counting = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether commands are ever shed (``max_backlog_seconds`` 0 turns it off)."""
        return self.max_backlog_seconds > 0

    def decide(self, client: str | None = None, key: str | None = None) -> Admitted | Shed:
        """Admit or shed ``client``'s next command (``key``: its ``Idempotency-Key``,
        which a ticket is kept under), from a reading at most ``refresh`` s old."""
        reading = self.reading()
        if reading is None:
            return Admitted(1)
        admitted = Admitted(_whole_seconds(_expected(reading)))
        if not self.enabled:
            return admitted
        inside = reading.waiting + self._admitted
        allowed = self._allowed()
        promised = self._promised + self._issued
        tickets = self.tickets if client is not None and key is not None else None
        if tickets is not None and client is not None and key is not None and promised > 0:
            ticket = tickets.redeem(client, key, room=inside < allowed)
            if ticket is not None and ticket.used:
                return self._admit(admitted)  # its room was kept
            if ticket is not None and ticket.due_in > 0:  # early: told again when
                return self._shed(reading, math.ceil(ticket.due_in))
            # Due, and the backlog has no room: the drain fell behind the schedule. A
            # new place at its end, rather than a try every second that would take
            # the room of the holders on time after it.
        if inside + promised < allowed:
            return self._admit(admitted)
        rate = self._capacity
        if tickets is None or client is None or key is None or rate <= 0:
            # Nothing to know it by when it comes back, or nothing drains to make room.
            return self._shed(reading, self._back_under(reading, promised))
        # Each ticket after the last one out, one drained command apart, so that the
        # retries come back at the rate the backlog drains (the table orders them:
        # another web process's tickets since the last reading are not counted here).
        due = tickets.issue(client, key, self._back_under(reading, 0), 1 / rate)
        if due <= PROMISE_HORIZON:
            with self._counting:
                self._issued += 1
        return self._shed(reading, min(math.ceil(due), self._longest))

    def expected_seconds(self) -> int:
        """Seconds until a command accepted now is expected to have its outcome (1 when
        nothing is known: no reading, or nothing decided lately)."""
        reading = self.reading()
        return 1 if reading is None else _whole_seconds(_expected(reading))

    def _allowed(self) -> float:
        """How many commands may wait: the aimed seconds' worth at the drain rate, and
        never fewer than ``min_backlog`` (nor more, while nothing drains)."""
        return max(self._capacity * self.aimed_seconds, float(self.min_backlog))

    def _admit(self, admitted: Admitted) -> Admitted:
        with self._counting:
            self._admitted += 1
        return admitted

    def _shed(self, reading: Backlog, retry_after: int) -> Shed:
        # The backlog as this process knows it: the reading and what it admitted since.
        waiting = reading.waiting + self._admitted
        return Shed(max(1, retry_after), waiting, reading.rate, self.aimed_seconds)

    def _back_under(self, reading: Backlog, promised: int) -> int:
        """Seconds until the commands waiting and those promised room are down to the
        aimed seconds' worth, at the rate read (the limit itself while nothing drains),
        at most :data:`LONGEST_RETRY` limits."""
        rate = self._capacity
        if rate <= 0:
            return max(1, math.ceil(self.max_backlog_seconds))
        ahead = reading.waiting + promised - self._allowed()
        return min(self._longest, max(1, math.ceil(ahead / rate)))

    @property
    def _longest(self) -> int:
        return max(1, math.ceil(self.max_backlog_seconds * LONGEST_RETRY))

    def reading(self) -> Backlog | None:
        """The last reading, read again when older than ``refresh`` (by one thread; the
        others keep deciding on the last one). None until a first read succeeds, and
        always without a gauge."""
        if self.gauge is None:
            return None
        now = self.clock()
        if now - self._read_at < self.refresh or not self._lock.acquire(blocking=False):
            return self._reading
        try:
            reading = self._reading = self.gauge(DRAIN_WINDOW)
            with self._counting:
                self._admitted = 0
            busy = reading.waiting >= self.min_backlog
            self._capacity = reading.rate if busy else max(self._capacity, reading.rate)
            if self.tickets is not None:
                promised = self.tickets.outstanding(PROMISE_HORIZON)
                with self._counting:
                    self._promised, self._issued = promised, 0
        except Exception:
            # Admit on the last reading: an accept that cannot be written fails on its
            # own, with its own 503; one that can should not be refused for a gauge.
            logger.warning("the backlog could not be read", exc_info=True)
        finally:
            self._read_at = now
            self._lock.release()
        return self._reading


def _expected(reading: Backlog) -> float:
    """Seconds the backlog of ``reading`` takes to drain (infinite: nothing drains)."""
    rate = reading.rate
    return reading.waiting / rate if rate > 0 else math.inf


def _whole_seconds(expected: float) -> int:
    # Nothing decided lately: the work is not known to wait on anything.
    return 1 if math.isinf(expected) else max(1, math.ceil(expected))
