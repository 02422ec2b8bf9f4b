"""ReservationSaga: given its history, when an event arrives, then its decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.reservation_saga import ReservationSaga, SagaState

NOW = datetime(2027, 1, 1, 20, 0, tzinfo=UTC)
DEADLINE = NOW + timedelta(seconds=30)


def decisions(saga: ReservationSaga) -> list[tuple[str, list[str]]]:
    """The events since the last look, each with the command types it issued."""
    return [
        (type(e).__name__, [c["type"] for c in getattr(e, "commands", [])])
        for e in saga.collect_events()
    ]


def saga_in(state: str) -> ReservationSaga:
    """A saga brought to ``state`` by the events that lead there."""
    saga = ReservationSaga.start("r1", "s1")
    if state in ("charging", "confirming", "compensating", "expiring", "confirmed"):
        saga.seats_reserved(DEADLINE)
    if state == "confirming":
        saga.payment_captured()
    if state == "confirmed":
        saga.payment_captured()
        saga.reservation_finished(SagaState.CONFIRMED)
    if state == "compensating":
        saga.payment_declined("card declined")
    if state == "expiring":
        saga.deadline_passed(DEADLINE)
    if state == "waitlisted":
        saga.seats_unavailable()
    saga.collect_events()
    assert saga.state == state
    return saga


def test_a_new_saga_reserves_the_seats() -> None:
    saga = ReservationSaga.start("r1", "s1")

    assert decisions(saga) == [("SagaStarted", ["ReserveSeats"])]
    assert saga.state == "reserving"
    assert saga.id == ReservationSaga.create_id("r1")


def test_held_seats_lead_to_a_charge_due_by_the_deadline() -> None:
    saga = saga_in("reserving")

    saga.seats_reserved(DEADLINE)

    assert decisions(saga) == [("SagaSeatsHeld", ["ChargePayment"])]
    assert saga.deadline_at == DEADLINE


def test_taken_seats_leave_the_saga_waiting_with_nothing_to_issue() -> None:
    saga = saga_in("reserving")

    saga.seats_unavailable()

    assert decisions(saga) == [("SagaWaitlisted", [])]
    assert saga.state == "waitlisted"


def test_seats_held_for_a_waiting_reservation_charge_it_in_a_new_run() -> None:
    saga = saga_in("waitlisted")

    saga.offered(DEADLINE)

    assert decisions(saga) == [("SagaResumed", ["ChargePayment"])]
    assert saga.issued[0]["key"] == "charge-2"
    assert saga.state == "charging"
    assert saga.deadline_at == DEADLINE


def test_a_captured_payment_confirms() -> None:
    saga = saga_in("charging")

    saga.payment_captured()

    assert decisions(saga) == [("SagaConfirming", ["ConfirmReservation"])]


def test_a_declined_payment_compensates_by_releasing_and_rejecting() -> None:
    saga = saga_in("charging")

    saga.payment_declined("card declined")

    assert decisions(saga) == [("SagaCompensating", ["RejectReservation"])]


def test_a_permanent_failure_to_reserve_rejects() -> None:
    saga = saga_in("reserving")

    saga.cannot_reserve("show s1 is cancelled")

    assert decisions(saga) == [("SagaCompensating", ["RejectReservation"])]


def test_the_deadline_expires_a_charge_without_outcome_but_not_before_it_is_due() -> None:
    saga = saga_in("charging")

    saga.deadline_passed(DEADLINE - timedelta(seconds=1))
    assert decisions(saga) == []
    saga.deadline_passed(DEADLINE)

    assert decisions(saga) == [("SagaExpiring", ["ExpireReservation"])]


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
    saga = saga_in(state)

    saga.reservation_finished(SagaState(status))

    assert decisions(saga) == [("SagaFinished", [])]
    assert saga.state == status
    assert saga.is_finished


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
def test_an_event_that_does_not_fit_the_state_is_a_no_op(state: str, when: object) -> None:
    saga = saga_in(state)

    when(saga)  # type: ignore[operator]

    assert decisions(saga) == []
    assert saga.state == state
