"""What one API key may ask of a web process: a rate of requests, a number of streams."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from application.admission import Admission, Backlog
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


class Readings:
    """A backlog gauge that reads whatever the test set last."""

    def __init__(self, reading: Backlog) -> None:
        self.reading = reading

    def __call__(self, longest_window: float) -> Backlog:
        return self.reading


def test_a_full_backlog_sheds_new_commands_with_when_to_come_back_and_never_reads() -> None:
    app = BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    container = make_container(app, api_keys=KEYS)
    # 250 waiting, 50 decided a second: 5 s to an outcome.
    readings = Readings(Backlog(250, oldest_seconds=4.0, drained=500, window=10.0))
    container._admission = Admission(readings, max_backlog_seconds=30, min_backlog=100, refresh=0)
    client = create_app(container).test_client()
    show = {"title": "T", "starts_at": "2027-01-01T20:00:00Z", "seats": ["A1"], "price_cents": 1}
    headers = {**as_("alice"), "Idempotency-Key": "s2-once"}

    accepted = client.put("/shows/s1", json=show, headers=as_("alice"))
    assert accepted.status_code == 202
    assert accepted.headers["Retry-After"] == "5"

    # 2,000 waiting at 50/s: 40 s of work, 22 s past the 18 s admitted (the aim: 60 %
    # of the 30 s limit).
    readings.reading = Backlog(2_000, oldest_seconds=9.0, drained=500, window=10.0)
    shed = client.put("/shows/s2", json=show, headers=headers)
    assert shed.status_code == 503
    assert shed.mimetype == "application/problem+json"
    assert shed.headers["Retry-After"] == "22"
    assert "more than 18 s of work" in shed.get_json()["detail"]
    problem = shed.get_json()
    assert problem["type"] == "/problems/backlog-full"
    assert (problem["waiting"], problem["drain_per_second"]) == (2_000, 50.0)

    # Nothing was accepted, and bad input is still told apart from a full backlog.
    def listed(show_id: str) -> list[Any]:
        query = {"resource": show_id}
        found = client.get("/commands", query_string=query, headers=as_("alice")).get_json()
        return list(found["items"])

    assert (len(listed("s1")), listed("s2")) == (1, [])
    invalid = client.put("/shows/s3", json={"title": 7}, headers=as_("alice"))
    assert invalid.status_code == 400
    # Reads are never shed.
    status = client.get(accepted.headers["Location"], headers=as_("alice"))
    assert status.status_code == 200
    assert client.get("/shows/s1", headers=as_("alice")).status_code in (200, 404)

    # Once the backlog drains, the same request is accepted.
    readings.reading = Backlog(300, oldest_seconds=2.0, drained=500, window=10.0)
    again = client.put("/shows/s2", json=show, headers=headers)
    assert again.status_code == 202
    assert again.headers["Retry-After"] == "6"
    app.close()
