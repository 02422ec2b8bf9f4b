"""Reservations over real HTTP: placed, driven by the saga, read back with its timeline."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import LiveService, create_show, place_reservation, reservation_settled
from tests.support.processes import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def test_a_reservation_is_confirmed_and_its_saga_shows_every_step(live: LiveService) -> None:
    client = live.client()
    show_id, reservation_id = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    create_show(live, show_id, seat="A1", price_cents=10)

    placed = place_reservation(live, show_id, reservation_id)
    assert placed.header("Location") == f"/reservations/{reservation_id}"

    reservation_settled(live, reservation_id)
    reservation = client.request("GET", f"/reservations/{reservation_id}").body
    assert reservation["amount_cents"] == 10

    def saga_done() -> bool:
        answer = client.request("GET", f"/sagas/{reservation['saga_id']}")
        return answer.status == 200 and answer.body["state"] == "confirmed"

    wait_until(saga_done, 30, "the saga to finish")
    saga = client.request("GET", f"/sagas/{reservation['saga_id']}").body
    commands = [e["name"] for e in saga["timeline"] if e["kind"] == "command"]
    assert commands == ["PlaceReservation", "ReserveSeats", "ChargePayment", "ConfirmReservation"]
    steps = client.request("GET", f"/commands?correlation_id={reservation['saga_id']}").body
    assert {c["status"] for c in steps["items"]} == {"succeeded"}
    assert all(c["causation_id"] for c in steps["items"] if c["type"] != "PlaceReservation")
    assert client.request("GET", f"/shows/{show_id}").body["seats"]["sold"] == ["A1"]
