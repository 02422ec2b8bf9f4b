"""ReservationSaga: given its history, when an event arrives, then its decision."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from domain.reservation_saga import ReservationSaga, SagaState
from tests.support.given import Given, created, given, given_events

NOW = datetime(2027, 1, 1, 20, 0, tzinfo=UTC)
DEADLINE = NOW + timedelta(seconds=30)


def start() -> ReservationSaga:
    return ReservationSaga.start("r1", "s1")


# The events that lead a saga to each state.
PATHS: dict[str, tuple[Callable[[ReservationSaga], object], ...]] = {
    "reserving": (),
    "charging": (lambda s: s.seats_reserved(DEADLINE),),
    "confirming": (lambda s: s.seats_reserved(DEADLINE), lambda s: s.payment_captured()),
    "confirmed": (
        lambda s: s.seats_reserved(DEADLINE),
        lambda s: s.payment_captured(),
        lambda s: s.reservation_finished(SagaState.CONFIRMED),
    ),
    "compensating": (
        lambda s: s.seats_reserved(DEADLINE),
        lambda s: s.payment_declined("card declined"),
    ),
    "expiring": (lambda s: s.seats_reserved(DEADLINE), lambda s: s.deadline_passed(DEADLINE)),
    "waitlisted": (lambda s: s.seats_unavailable(),),
}


def saga_in(state: str) -> Given[ReservationSaga]:
    """A saga brought to ``state`` by the events that lead there."""
    found = given(start, *PATHS[state])
    assert found.aggregate.state == state
    return found


def test_a_new_saga_reserves_the_seats() -> None:
    then = created(start)

    assert then.decisions == [("SagaStarted", ["ReserveSeats"])]
    assert then.aggregate.state == "reserving"
    assert then.aggregate.id == ReservationSaga.create_id("r1")


def test_held_seats_lead_to_a_charge_due_by_the_deadline() -> None:
    then = saga_in("reserving").when(lambda s: s.seats_reserved(DEADLINE))

    assert then.decisions == [("SagaSeatsHeld", ["ChargePayment"])]
    assert then.aggregate.deadline_at == DEADLINE


def test_taken_seats_leave_the_saga_waiting_with_nothing_to_issue() -> None:
    then = saga_in("reserving").when(lambda s: s.seats_unavailable())

    assert then.decisions == [("SagaWaitlisted", [])]
    assert then.aggregate.state == "waitlisted"


def test_seats_held_for_a_waiting_reservation_charge_it_in_a_new_run() -> None:
    then = saga_in("waitlisted").when(lambda s: s.offered(DEADLINE))

    assert then.decisions == [("SagaResumed", ["ChargePayment"])]
    assert then.aggregate.issued[0]["key"] == "charge-2"
    assert then.aggregate.state == "charging"
    assert then.aggregate.deadline_at == DEADLINE


def test_a_captured_payment_confirms() -> None:
    then = saga_in("charging").when(lambda s: s.payment_captured())

    assert then.decisions == [("SagaConfirming", ["ConfirmReservation"])]


def test_a_declined_payment_compensates_by_releasing_and_rejecting() -> None:
    then = saga_in("charging").when(lambda s: s.payment_declined("card declined"))

    assert then.decisions == [("SagaCompensating", ["RejectReservation"])]


def test_a_permanent_failure_to_reserve_rejects() -> None:
    then = saga_in("reserving").when(lambda s: s.cannot_reserve("show s1 is cancelled"))

    assert then.decisions == [("SagaCompensating", ["RejectReservation"])]


def test_the_deadline_expires_a_charge_without_outcome_but_not_before_it_is_due() -> None:
    saga = saga_in("charging")

    early = saga.when(lambda s: s.deadline_passed(DEADLINE - timedelta(seconds=1)))
    assert early.decisions == []
    due = saga.when(lambda s: s.deadline_passed(DEADLINE))

    assert due.decisions == [("SagaExpiring", ["ExpireReservation"])]


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("confirming", "confirmed"),
        ("compensating", "rejected"),
        ("expiring", "expired"),
        ("charging", "cancelled"),
        ("confirmed", "cancelled"),
    ],
)
def test_the_reservation_s_final_status_ends_the_saga(state: str, status: str) -> None:
    then = saga_in(state).when(lambda s: s.reservation_finished(SagaState(status)))

    assert then.decisions == [("SagaFinished", [])]
    assert then.aggregate.state == status
    assert then.aggregate.is_finished


@pytest.mark.parametrize(
    ("state", "when"),
    [
        ("charging", lambda s: s.seats_reserved(DEADLINE)),
        ("charging", lambda s: s.seats_unavailable()),
        ("charging", lambda s: s.offered(DEADLINE)),
        ("expiring", lambda s: s.payment_captured()),
        ("confirming", lambda s: s.payment_captured()),
        ("confirming", lambda s: s.payment_declined("late decline")),
        ("confirming", lambda s: s.deadline_passed(DEADLINE)),
        ("compensating", lambda s: s.payment_captured()),
        ("waitlisted", lambda s: s.seats_reserved(DEADLINE)),
        ("reserving", lambda s: s.payment_declined("no charge yet")),
        ("confirmed", lambda s: s.reservation_finished("confirmed")),
        ("confirmed", lambda s: s.reservation_finished("expired")),
        ("reserving", lambda s: s.reservation_finished("pending")),
    ],
)
def test_an_event_that_does_not_fit_the_state_is_a_no_op(
    state: str, when: Callable[[ReservationSaga], object]
) -> None:
    then = saga_in(state).when(when)

    assert then.decisions == []
    assert then.aggregate.state == state


def test_a_saga_rebuilt_from_its_recorded_events_decides_as_the_live_one() -> None:
    live = saga_in("charging")
    rebuilt = given_events(live.history)

    assert rebuilt.aggregate.state == live.aggregate.state
    assert rebuilt.when(lambda s: s.payment_captured()).decisions == [
        ("SagaConfirming", ["ConfirmReservation"])
    ]
