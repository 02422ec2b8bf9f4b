"""``/admin/...``: the operator's CLI over HTTP, for the ``admin`` scope only.

On the in-memory store, whose read models follow the log at each read; the same
operations on PostgreSQL, with the projector running, are in
``tests/integration/test_operator_cli.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from flask.testing import FlaskClient

from application.event_log import BoxofficeApplication
from domain.reservation_saga import ReservationSaga
from infrastructure.settings import ApiKey
from interfaces.http import create_app
from tests.support.service import make_container
from tests.support.world import World

OPS = {"Authorization": "Bearer k-ops"}
ALICE = {"Authorization": "Bearer k-alice"}


class Admin:
    """The admin API over a world whose story has a paid, a declined and a dead-lettered
    reservation (its saga stuck charging)."""

    def __init__(self, app: BoxofficeApplication) -> None:
        keys = (
            ApiKey("ops", frozenset({"admin"}), ApiKey.digest_of("k-ops")),
            ApiKey(
                "alice", frozenset({"commands:read", "commands:write"}), ApiKey.digest_of("k-alice")
            ),
        )
        self.container = make_container(app, api_keys=keys)
        self.client: FlaskClient = create_app(self.container).test_client()
        self.world = World(app)
        self.world.create_show(["A1", "A2", "A3"], price_cents=1500)
        for reservation_id, seat, card in (
            ("paid", "A1", "tok_approve"),
            ("declined", "A2", "tok_decline"),
            ("stuck", "A3", "tok_outage"),
        ):
            self.world.place(reservation_id, [seat], card)

    def get(self, path: str, **query: str) -> Any:
        return self.client.get(path, query_string=query, headers=OPS)

    def post(self, path: str, body: Any = None) -> Any:
        return self.client.post(path, json=body if body is not None else {}, headers=OPS)


@pytest.fixture
def admin() -> Iterator[Admin]:
    app = BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    built = Admin(app)
    yield built
    built.container.close()
    app.close()


def test_only_the_admin_scope_reaches_it(admin: Admin) -> None:
    for path in ("/admin/commands", "/admin/sagas", "/admin/deadletters"):
        assert admin.client.get(path, headers=ALICE).status_code == 403
        assert admin.client.get(path).status_code == 401
    response = admin.client.post("/admin/sagas/replay", json={"all": True}, headers=ALICE)
    assert response.status_code == 403


def test_commands_by_resource_and_a_record_with_tracebacks(admin: Admin) -> None:
    listed = admin.get("/admin/commands", resource="stuck").get_json()["items"]
    assert {c["type"] for c in listed} == {"PlaceReservation", "ReserveSeats", "ChargePayment"}
    charge = next(c for c in listed if c["type"] == "ChargePayment")

    record = admin.get(f"/admin/commands/{charge['command_id']}").get_json()

    assert record["status"] == "dead_lettered"
    assert all("Traceback" in a["error"]["traceback"] for a in record["attempts"])
    assert admin.get("/admin/commands/not-a-uuid").status_code == 404


def test_every_bad_argument_is_listed(admin: Admin) -> None:
    response = admin.get("/admin/commands", status="lost", since="yesterday", limit="0")

    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert {e["location"] for e in response.get_json()["errors"]} == {
        "query.status",
        "query.since",
        "query.limit",
    }
    bad_body = admin.post("/admin/sagas/replay", {"all": True, "saga_class": "x:Y"})
    assert bad_body.status_code == 400
    assert bad_body.get_json()["errors"][0]["location"] == "body.saga_class"


def test_dead_letters_and_the_saga_stuck_behind_one(admin: Admin) -> None:
    letters = admin.get("/admin/deadletters").get_json()
    assert letters["counts"] == {"PaymentGatewayUnavailableError": 1}

    stuck = admin.get("/admin/sagas", dead_lettered="true").get_json()["items"]
    assert [s["reservation_id"] for s in stuck] == ["stuck"]
    timeline = admin.get("/admin/sagas/stuck").get_json()["timeline"]
    held = next(e for e in timeline if e["name"] == "SagaSeatsHeld")
    assert held["deadline_at"] is not None
    # The events it received, and which one each decision answered.
    received = [e["name"] for e in timeline if e["kind"] == "event"]
    assert received == ["ReservationPlaced", "ReservationSeatsHeld"]
    assert held["cause"] == "ReservationSeatsHeld (v2)"
    assert admin.get("/admin/sagas/nobody").status_code == 404


def test_replay_over_http_finds_every_saga_identical(admin: Admin) -> None:
    answer = admin.post("/admin/sagas/replay", {"all": True}).get_json()

    assert answer["summary"]["replayed"] == answer["summary"]["identical"] == 3
    assert answer["sagas"] == []
    assert admin.post("/admin/sagas/replay", {}).status_code == 400


def test_a_retry_reissues_the_stuck_step_once_until_it_is_stuck_again(admin: Admin) -> None:
    first = admin.post("/admin/sagas/stuck/retry").get_json()["steps"]
    again = admin.post("/admin/sagas/stuck/retry").get_json()["steps"]

    assert [s["result"] for s in first] == ["issued"]
    assert again == [{**first[0], "result": "pending"}]
    admin.world.settle()  # the copy fails as its original did (the outage goes on)
    later = admin.post("/admin/sagas/stuck/retry").get_json()["steps"]
    assert [s["result"] for s in later] == ["issued"]
    assert later[0]["command_id"] != first[0]["command_id"]
    retried = admin.world.pipeline.get_command(UUID(later[0]["command_id"]))
    assert retried is not None
    assert retried.correlation_id == ReservationSaga.create_id("stuck")
    assert retried.causation_id is not None
    assert first[0]["command_id"] in retried.causation_id  # the copy it follows
    refused = admin.post("/admin/sagas/paid/retry")
    assert refused.status_code == 409
    assert refused.get_json()["type"] == "/problems/refused"


def test_redrive_by_type_once_and_skips_the_rest(admin: Admin) -> None:
    by_type = {"type": "PaymentGatewayUnavailableError"}

    first = admin.post("/admin/deadletters/redrive", by_type).get_json()["results"]
    second = admin.post("/admin/deadletters/redrive", by_type).get_json()["results"]

    assert [r["result"] for r in first] == ["redriven"]
    assert second == []  # nothing of that type is dead-lettered any more
    again = admin.post("/admin/deadletters/redrive", {"command_ids": [first[0]["command_id"]]})
    assert again.get_json()["results"][0]["result"] == "skipped"
    both = admin.post("/admin/deadletters/redrive", {"all": True, "type": "X"})
    assert both.status_code == 400


def test_projections_status_over_http(admin: Admin) -> None:
    items = admin.get("/projections", sample="0.1").get_json()["items"]

    assert {p["name"]: p["lag"] for p in items} == {
        "command_registry": 0,
        "shows": 0,
        "reservations": 0,
        "sagas": 0,
    }
    assert admin.get("/projections", sample="60").status_code == 400
