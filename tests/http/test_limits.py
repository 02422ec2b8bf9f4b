"""What one API key may ask of a web process: a rate of requests, a number of streams."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from application.event_log import BoxofficeApplication
from infrastructure.settings import ApiKey
from interfaces.http import create_app
from tests.support.service import make_container

KEYS = tuple(
    ApiKey(client, frozenset({"commands:write", "commands:read"}), ApiKey.digest_of(f"k-{client}"))
    for client in ("alice", "bob")
)


def as_(client: str) -> dict[str, str]:
    return {"Authorization": f"Bearer k-{client}"}


@pytest.fixture
def limited() -> Iterator[Any]:
    app = BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})

    def client(**settings: Any) -> FlaskClient:
        return create_app(make_container(app, api_keys=KEYS, **settings)).test_client()

    yield client
    app.close()


def test_a_key_past_its_rate_gets_429_with_retry_after_and_others_do_not(limited: Any) -> None:
    client = limited(rate_limit_per_second=0.5, rate_limit_burst=3)

    answers = [client.get("/shows/s1", headers=as_("alice")).status_code for _ in range(4)]
    other = client.get("/shows/s1", headers=as_("bob"))

    assert answers == [404, 404, 404, 429]
    assert other.status_code == 404
    too_many = client.get("/shows/s1", headers=as_("alice"))
    assert too_many.headers["Retry-After"] == "2"
    assert too_many.get_json()["type"] == "/problems/too-many-requests"


def test_a_key_may_hold_only_so_many_event_streams(limited: Any) -> None:
    client = limited(streams_per_client=1)
    show = {"title": "T", "starts_at": "2027-01-01T20:00:00Z", "seats": ["A1"], "price_cents": 1}
    location = client.put("/shows/s1", json=show, headers=as_("alice")).headers["Location"]

    first = client.get(f"{location}/events", headers=as_("alice"), buffered=False)
    second = client.get(f"{location}/events", headers=as_("alice"), buffered=False)
    others = client.get(f"{location}/events", headers=as_("bob"), buffered=False)
    first.close()
    after = client.get(f"{location}/events", headers=as_("alice"), buffered=False)

    assert first.status_code == 200
    assert second.status_code == 429
    assert others.status_code == 404  # bob's limit is his own; the command is alice's
    assert after.status_code == 200
    after.close()
