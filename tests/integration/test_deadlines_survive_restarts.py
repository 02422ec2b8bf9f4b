"""A payment deadline is durable: it fires even if the saga runner was down when it fell due."""

from __future__ import annotations

import time

import pytest

from domain.reservation import Reservation
from domain.reservation_saga import ReservationSaga
from tests.integration.conftest import Stack
from tests.support.processes import running, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def test_a_deadline_missed_while_the_saga_runner_was_down_fires_after_restart(
    stack: Stack,
) -> None:
    settings = {"PAYMENT_DEADLINE_SECONDS": "2"}
    sagas = stack.process("saga-runner", **settings)
    parts = [stack.process(p, **settings) for p in ("relay", "worker", "projector")]
    repository = stack.container.app.repository
    with running(*parts), running(sagas):
        show = stack.submit(
            "CreateShow",
            "show",
            show_id="s1",
            title="Hamlet",
            starts_at="2027-01-01T20:00:00Z",
            seats=["A1"],
            price_cents=100,
        )
        assert stack.outcome(show.command.id).status == "succeeded"
        stack.submit(
            "PlaceReservation",
            "reserve",
            reservation_id="r1",
            show_id="s1",
            customer_id="c1",
            seats=["A1"],
            card_token="tok_outage",
        )

        def charging() -> bool:
            try:
                saga: ReservationSaga = repository.get(ReservationSaga.create_id("r1"))
            except Exception:  # noqa: BLE001 - not started yet
                return False
            return saga.state == "charging"

        wait_until(charging, 30, "the saga to wait for the payment")
        sagas.kill()
        time.sleep(3)  # the deadline falls due while no saga runner runs
        reservation: Reservation = repository.get(Reservation.create_id("r1"))
        assert reservation.status == "pending"

        sagas.start()
        wait_until(
            lambda: repository.get(Reservation.create_id("r1")).status == "expired",
            30,
            "the deadline to fire after the restart",
        )
