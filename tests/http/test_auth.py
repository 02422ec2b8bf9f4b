"""Who may do what: every endpoint with no key, a wrong key, a key without the scope,
and another client's key. Another client's things are 404s, so ids never leak."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient

from application.event_log import BoxofficeApplication
from domain.reservation import Reservation
from infrastructure.settings import ApiKey
from interfaces.http import create_app
from tests.support.service import make_container
from tests.support.world import World

KEYS = {
    "alice": ("k-alice", "commands:write,commands:read"),
    "bob": ("k-bob", "commands:write,commands:read"),
    "reader": ("k-reader", "commands:read"),
    "writer": ("k-writer", "commands:write"),
    "ops": ("k-ops", "admin"),
}
SHOW = {"title": "Hamlet", "starts_at": "2027-01-01T20:00:00Z", "seats": ["A1", "A2"]}
PLACE = {"show_id": "s1", "customer_id": "c1", "seats": ["A1"], "card_token": "tok_approve"}


def key_of(client: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[client][0]}"}


@dataclass
class Service:
    client: FlaskClient
    world: World
    app: BoxofficeApplication
    command_id: str  # alice's PlaceReservation
    saga_id: str

    def call(self, method: str, path: str, who: str | None, **kwargs: Any) -> Any:
        headers = {**(key_of(who) if who in KEYS else {}), **kwargs.pop("headers", {})}
        if who == "wrong":
            headers["Authorization"] = "Bearer not-a-key"
        return self.client.open(path, method=method, headers=headers, **kwargs)


@pytest.fixture
def service() -> Iterator[Service]:
    app = BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    keys = tuple(
        ApiKey(client, frozenset(scopes.split(",")), ApiKey.digest_of(key))
        for client, (key, scopes) in KEYS.items()
    )
    container = make_container(app, api_keys=keys)
    client = create_app(container).test_client()
    world = World(app)
    client.put("/shows/s1", json={**SHOW, "price_cents": 100}, headers=key_of("alice"))
    placed = client.put("/reservations/r1", json=PLACE, headers=key_of("alice")).get_json()
    world.settle()
    saga_id = client.get("/reservations/r1", headers=key_of("alice")).get_json()["saga_id"]
    yield Service(client, world, app, placed["command_id"], saga_id)
    container.close()
    app.close()


READS = [
    "/commands/{command}",
    "/commands/{command}/events",
    "/commands",
    "/shows/s1",
    "/reservations/r1",
    "/sagas/{saga}",
]
WRITES = [
    ("PUT", "/shows/s2", {**SHOW, "price_cents": 1}),
    ("POST", "/shows/s1/cancel", {}),
    ("PUT", "/reservations/r2", PLACE),
    ("POST", "/reservations/r1/cancel", {}),
]


def path_of(service: Service, template: str) -> str:
    return template.format(command=service.command_id, saga=service.saga_id)


@pytest.mark.parametrize("who", [None, "wrong"])
@pytest.mark.parametrize("template", [*READS, "/projections"])
def test_reads_need_a_valid_key(service: Service, template: str, who: str | None) -> None:
    response = service.call("GET", path_of(service, template), who)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("who", [None, "wrong"])
@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_writes_need_a_valid_key_and_leave_nothing(
    service: Service, method: str, path: str, body: dict[str, Any], who: str | None
) -> None:
    head = service.app.recorder.max_notification_id()

    response = service.call(method, path, who, json=body)

    assert response.status_code == 401
    assert service.app.recorder.max_notification_id() == head


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_a_key_without_the_write_scope_is_403_and_leaves_nothing(
    service: Service, method: str, path: str, body: dict[str, Any]
) -> None:
    head = service.app.recorder.max_notification_id()

    response = service.call(method, path, "reader", json=body)

    assert response.status_code == 403
    assert response.get_json()["type"] == "/problems/forbidden"
    assert service.app.recorder.max_notification_id() == head


@pytest.mark.parametrize("template", READS)
def test_a_key_without_the_read_scope_is_403(service: Service, template: str) -> None:
    assert service.call("GET", path_of(service, template), "writer").status_code == 403


def test_only_an_admin_sees_the_projections(service: Service) -> None:
    assert service.call("GET", "/projections", "alice").status_code == 403
    assert service.call("GET", "/projections", "ops").status_code == 200


@pytest.mark.parametrize(
    "template",
    ["/commands/{command}", "/commands/{command}/events", "/reservations/r1", "/sagas/{saga}"],
)
def test_another_client_s_things_are_404_as_if_they_did_not_exist(
    service: Service, template: str
) -> None:
    path = path_of(service, template)

    theirs = service.call("GET", path, "bob")
    owners = service.call("GET", path, "alice")
    admins = service.call("GET", path, "ops")

    assert theirs.status_code == 404
    assert theirs.get_json()["type"] == "/problems/not-found"
    assert owners.status_code == 200
    assert admins.status_code == 200


def test_a_list_holds_only_the_caller_s_commands(service: Service) -> None:
    service.call("PUT", "/shows/bobs", "bob", json={**SHOW, "price_cents": 1})

    def clients(who: str) -> set[str]:
        items = service.call("GET", "/commands?limit=500", who).get_json()["items"]
        return {item["client"] for item in items}

    # alice sees her saga's steps too: they run for her.
    assert clients("alice") == {"alice"}
    assert clients("bob") == {"bob"}
    assert clients("ops") == {"alice", "bob"}


def test_shows_are_read_by_everyone_and_changed_by_their_creator(service: Service) -> None:
    assert service.call("GET", "/shows/s1", "bob").status_code == 200

    cancel = service.call("POST", "/shows/s1/cancel", "bob", headers={"Prefer": "wait=1"})

    assert cancel.status_code == 202  # the worker runs it in the test's settle()
    service.world.settle()
    document = service.call("GET", "/shows/s1", "alice").get_json()
    assert document["status"] == "scheduled"
    command = service.call("GET", cancel.headers["Location"], "bob").get_json()
    assert command["status"] == "failed"
    assert command["error"]["category"] == "not_found"
    assert command["error"]["message"] == "/shows/s1 does not exist"


def test_another_client_cannot_cancel_a_reservation(service: Service) -> None:
    cancel = service.call("POST", "/reservations/r1/cancel", "bob", json={})
    service.world.settle()

    command = service.call("GET", cancel.headers["Location"], "bob").get_json()
    assert command["status"] == "failed"
    assert command["error"]["message"] == "/reservations/r1 does not exist"
    reservation: Reservation = service.app.repository.get(Reservation.create_id("r1"))
    assert reservation.status == "confirmed"
    # Alice may.
    service.call("POST", "/reservations/r1/cancel", "alice", json={})
    service.world.settle()
    assert service.app.repository.get(Reservation.create_id("r1")).status == "cancelled"
