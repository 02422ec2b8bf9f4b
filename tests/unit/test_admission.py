"""Admission control: admit while the backlog drains within the limit, shed past it."""

from __future__ import annotations

import logging

import pytest

from application.admission import Admission, Admitted, Backlog, Shed, Ticket


class Gauge:
    """Readings handed out in turn, each read counted."""

    def __init__(self, *readings: Backlog | Exception) -> None:
        self.readings = list(readings)
        self.reads = 0
        self.windows: list[float] = []

    def __call__(self, longest_window: float) -> Backlog:
        self.windows.append(longest_window)
        self.reads += 1
        reading = self.readings[min(self.reads, len(self.readings)) - 1]
        if isinstance(reading, Exception):
            raise reading
        return reading


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def backlog(waiting: int, per_second: float, window: float = 10.0) -> Backlog:
    return Backlog(waiting, oldest_seconds=5.0, drained=round(per_second * window), window=window)


def admission(*readings: Backlog | Exception, limit: float = 30, least: int = 100) -> Admission:
    # Up to the whole limit, so that the figures read plainly (the aim has its own test).
    return Admission(Gauge(*readings), limit, least, refresh=0.5, clock=Clock(), aim=1)


def test_a_backlog_within_the_limit_is_admitted_with_its_expected_wait() -> None:
    # 250 waiting, 50 decided a second: 5 s to an outcome, well under 30 s.
    assert admission(backlog(250, 50)).decide() == Admitted(5)


def test_a_backlog_past_the_limit_is_shed_until_it_is_back_under() -> None:
    # 2,000 waiting at 50/s is 40 s of work; 30 s of it (1,500) is allowed: 500 too
    # many, gone in 10 s.
    decision = admission(backlog(2_000, 50)).decide()
    assert decision == Shed(retry_after=10, waiting=2_000, rate=50.0, limit_seconds=30)


def test_a_backlog_that_does_not_drain_is_shed_for_the_limit() -> None:
    # Workers down: nothing decided, 150 waiting, past the smallest backlog shed.
    decision = admission(backlog(150, 0)).decide()
    assert isinstance(decision, Shed)
    assert decision.retry_after == 30


def test_work_is_admitted_up_to_the_aim_below_the_limit() -> None:
    # At 50/s and a 30 s limit, 60 % of it: 900 commands.
    aimed = Admission(Gauge(backlog(899, 50)), 30, 100, clock=Clock())
    assert aimed.decide() == Admitted(18)
    full = Admission(Gauge(backlog(1_000, 50)), 30, 100, clock=Clock())
    # 100 past the aim, gone in 2 s; the problem says what is admitted up to.
    assert full.decide() == Shed(retry_after=2, waiting=1_000, rate=50.0, limit_seconds=18)
    # The whole limit admitted when asked, as the other tests do.
    assert Admission(Gauge(backlog(1_000, 50)), 30, 100, clock=Clock(), aim=1).decide() == (
        Admitted(20)
    )


def test_a_small_backlog_is_never_shed() -> None:
    # 99 waiting and nothing drains: below the smallest backlog that is shed.
    assert admission(backlog(99, 0)).decide() == Admitted(1)
    # 150 at 1/s is 150 s of work, but the allowed backlog is at least 100 commands.
    decision = admission(backlog(150, 1), least=100).decide()
    assert isinstance(decision, Shed)
    assert decision.retry_after == 50


def test_a_limit_of_zero_never_sheds_but_still_says_when_to_look() -> None:
    decided = admission(backlog(5_000, 50), limit=0)
    assert not decided.enabled
    assert decided.decide() == Admitted(100)
    assert decided.expected_seconds() == 100


def test_the_backlog_is_read_at_most_once_per_refresh() -> None:
    gauge = Gauge(backlog(250, 50), backlog(2_000, 50))
    clock = Clock()
    decided = Admission(gauge, 30, 100, refresh=0.5, clock=clock, aim=1)
    assert decided.decide() == Admitted(5)
    clock.now += 0.4
    assert decided.decide() == Admitted(5)
    assert gauge.reads == 1
    clock.now += 0.2
    assert isinstance(decided.decide(), Shed)
    assert gauge.reads == 2
    assert gauge.windows == [10.0, 10.0]


def test_a_gauge_that_fails_leaves_the_last_reading(caplog: pytest.LogCaptureFixture) -> None:
    gauge = Gauge(backlog(2_000, 50), OSError("the store went away"))
    clock = Clock()
    decided = Admission(gauge, 30, 100, refresh=0.5, clock=clock, aim=1)
    assert isinstance(decided.decide(), Shed)
    clock.now += 1
    with caplog.at_level(logging.WARNING):
        assert isinstance(decided.decide(), Shed)
    assert "the backlog could not be read" in caplog.text
    assert gauge.reads == 2


def test_without_a_gauge_every_command_is_admitted() -> None:
    decided = Admission(None, 30, 100)
    assert decided.decide() == Admitted(1)
    assert decided.expected_seconds() == 1


def test_the_drain_rate_is_counted_over_the_window_read() -> None:
    # A backlog one second old: its drain over that second, not over ten.
    reading = Backlog(waiting=400, oldest_seconds=1.0, drained=200, window=1.0)
    assert reading.rate == 200
    assert admission(reading).decide() == Admitted(2)


class MemoryTickets:
    """Tickets in a dict, their times on the test's clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.due: dict[tuple[str, str], float] = {}

    def issue(self, client: str, key: str, due_in: float, spacing: float) -> float:
        last = max(self.due.values(), default=-1e9)
        self.due[client, key] = max(self.clock.now + due_in, last + spacing)
        return self.due[client, key] - self.clock.now

    def redeem(self, client: str, key: str, room: bool) -> Ticket | None:
        due = self.due.get((client, key))
        if due is None:
            return None
        used = room
        if used:
            del self.due[client, key]
        return Ticket(due - self.clock.now, used)

    def outstanding(self, within: float) -> int:
        return sum(1 for due in self.due.values() if due <= self.clock.now + within)


def test_a_shed_command_has_its_room_kept_and_each_next_one_comes_back_later() -> None:
    clock = Clock()
    tickets = MemoryTickets(clock)
    # 1,600 waiting at 50/s: 100 past the 1,500 allowed, gone in 2 s; still full two
    # seconds on (new ones came); then down to 1,499.
    gauge = Gauge(backlog(1_600, 50), backlog(1_600, 50), backlog(1_499, 50))
    decided = Admission(gauge, 30, 100, refresh=1, clock=clock, tickets=tickets, aim=1)

    first = decided.decide("alice", "k1")
    second = decided.decide("bob", "k2")
    unkeyed = decided.decide("carol", None)
    assert (first, second) == (Shed(2, 1_600, 50.0, 30), Shed(3, 1_600, 50.0, 30))
    # Without an Idempotency-Key there is nothing to keep a ticket under.
    assert isinstance(unkeyed, Shed)
    assert set(tickets.due) == {("alice", "k1"), ("bob", "k2")}

    # Too early: told again when its time is (in 1.52 s).
    clock.now += 0.5
    assert decided.decide("bob", "k2") == Shed(2, 1_600, 50.0, 30)
    # On time, but the backlog is still full (the drain fell behind): a new place at
    # the end of the schedule, rather than a try every second that would take the
    # room of those due after it.
    clock.now += 1.5
    assert decided.decide("alice", "k1") == Shed(2, 1_600, 50.0, 30)
    assert tickets.due["alice", "k1"] == clock.now + 2
    # Room again: its ticket is used, before any newcomer's.
    clock.now += 1
    assert decided.decide("alice", "k1") == Admitted(30)
    assert ("alice", "k1") not in tickets.due
    # The room left is bob's, whose ticket is still out: a newcomer is shed.
    assert isinstance(decided.decide("dave", "k4"), Shed)


def test_no_room_is_promised_while_nothing_drains() -> None:
    clock = Clock()
    tickets = MemoryTickets(clock)
    decided = Admission(Gauge(backlog(150, 0)), 30, 100, clock=clock, tickets=tickets, aim=1)
    assert decided.decide("alice", "k1") == Shed(30, 150, 0.0, 30)
    assert tickets.due == {}


def test_only_the_tickets_due_soon_hold_their_room() -> None:
    clock = Clock()
    tickets = MemoryTickets(clock)
    # 400 waiting at 50/s with a limit of 10 s: room for 100 more.
    decided = Admission(Gauge(backlog(400, 50)), 10, 100, clock=clock, tickets=tickets, aim=1)

    # 150 holders on their way (due within two seconds): no room left.
    tickets.due.update({("shed", f"k{n}"): clock.now + 0.5 + n / 100 for n in range(150)})
    assert isinstance(decided.decide("newcomer", "n1"), Shed)
    # Holders 5 s away keep none: the backlog drains meanwhile, and late or absent
    # clients would leave the workers idle.
    tickets.due = {("shed", f"late{n}"): clock.now + 5 + n / 50 for n in range(150)}
    clock.now += 1  # past the refresh: the tickets are read again
    assert decided.decide("newcomer", "n2") == Admitted(8)
