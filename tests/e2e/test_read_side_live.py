"""The read side over real HTTP: registry, paging, consistency tokens, projection lag."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e.conftest import (
    ADMIN_TOKEN,
    LiveService,
    create_show,
    place_reservation,
    reservation_settled,
)
from tests.support.processes import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def test_a_consistency_token_read_returns_the_new_state_on_the_first_try(
    live: LiveService,
) -> None:
    show_id = uuid.uuid4().hex[:10]
    create_show(live, show_id)
    client = live.client()
    cancelled = client.request("POST", f"/shows/{show_id}/cancel", {}, {"Prefer": "wait=5"})
    command = client.request("GET", f"/commands/{cancelled.body['command_id']}").body
    wait_until(
        lambda: bool(
            client.request("GET", f"/commands/{command['command_id']}").body.get(
                "consistency_token"
            )
        ),
        10,
        "the registry to record the outcome",
    )
    token = client.request("GET", f"/commands/{command['command_id']}").body["consistency_token"]

    read = client.request("GET", f"/shows/{show_id}", headers={"Consistency-Token": token})

    assert read.status == 200
    assert read.body["status"] == "cancelled"


def test_the_registry_lists_commands_by_filter_with_cursor_paging(live: LiveService) -> None:
    show_ids = [uuid.uuid4().hex[:10] for _ in range(3)]
    created = [create_show(live, s) for s in show_ids]
    aggregate_id = created[0]["aggregate_id"]
    client = live.client()
    wait_until(
        lambda: (
            len(client.request("GET", f"/commands?aggregate_id={aggregate_id}").body["items"]) == 1
        ),
        10,
        "the registry row",
    )

    by_aggregate = client.request("GET", f"/commands?aggregate_id={aggregate_id}").body
    first_page = client.request("GET", "/commands?type=CreateShow&limit=2").body
    second_page = client.request("GET", first_page["links"]["next"]).body
    bad = client.request("GET", "/commands?status=done&limit=0&aggregate_id=x")

    assert [c["command_id"] for c in by_aggregate["items"]] == [created[0]["command_id"]]
    assert by_aggregate["items"][0]["projections"] == dict.fromkeys(
        ("command_registry", "shows", "reservations", "sagas"), True
    )
    assert len(first_page["items"]) == 2
    assert not {c["command_id"] for c in first_page["items"]} & {
        c["command_id"] for c in second_page["items"]
    }
    assert bad.status == 400
    assert {e["location"] for e in bad.body["errors"]} == {
        "query.status",
        "query.limit",
        "query.aggregate_id",
    }


def test_projection_positions_and_lag_are_exposed(live: LiveService) -> None:
    create_show(live, uuid.uuid4().hex[:10])
    client = live.client(token=ADMIN_TOKEN)  # an operator's view

    def caught_up() -> bool:
        items = client.request("GET", "/projections").body["items"]
        return all(item["lag"] == 0 for item in items)

    wait_until(caught_up, 10, "the projections to catch up")
    names = {i["name"] for i in client.request("GET", "/projections").body["items"]}
    assert names == {"command_registry", "shows", "reservations", "sagas"}


def test_the_event_stream_shows_accepted_running_succeeded_in_order(live: LiveService) -> None:
    show_id = uuid.uuid4().hex[:10]
    client = live.client()
    accepted = client.request(
        "PUT",
        f"/shows/{show_id}",
        {"title": "Lear", "starts_at": "2027-02-01T20:00:00Z", "seats": ["B1"], "price_cents": 1},
        {"Idempotency-Key": show_id},
    )
    stream = client.request_text("GET", f"/commands/{accepted.body['command_id']}/events")

    statuses = [
        json.loads(line.removeprefix("data: "))["status"]
        for line in stream.splitlines()
        if line.startswith("data: ")
    ]
    assert statuses == ["accepted", "running", "succeeded"]


def test_a_saga_s_command_has_its_timeline_from_the_accept_to_each_view(
    live: LiveService,
) -> None:
    client = live.client()
    show_id, reservation_id = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    create_show(live, show_id, seat="A1", price_cents=10)
    place_reservation(live, show_id, reservation_id, wait=False)
    saga_id = reservation_settled(live, reservation_id)
    listed = client.request(
        "GET", f"/commands?correlation_id={saga_id}&type=ConfirmReservation"
    ).body["items"]
    command_id = listed[0]["command_id"]

    def timeline() -> list[dict[str, object]]:
        answer = client.request("GET", f"/commands/{command_id}?timeline=true")
        assert answer.status == 200, answer.body
        hops: list[dict[str, object]] = answer.body["timeline"]
        return hops

    wait_until(
        lambda: {"reservations", "command_registry"} <= {h.get("view") for h in timeline()},
        30,
        "the confirmation visible in the registry and the reservations view",
    )
    hops = timeline()
    names = [h["hop"] for h in hops]
    assert names[:5] == ["accepted", "published", "received", "started", "outcome"]
    assert [h["component"] for h in hops[:2]] == ["saga_runner", "relay"]
    assert hops[2]["component"] == hops[3]["component"]  # the worker that took it ran it
    # On one machine, one clock: each hop after the one before it.
    times = [float(str(h["ms"])) for h in hops]
    assert times == sorted(times)
    assert times[0] == 0
