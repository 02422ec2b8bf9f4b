"""The operator's console through Flask's test client, on the in-memory store: signing
in, the page's figures, a search with its waterfall, a saga's timeline, the event
stream and a re-drive. ``tests/e2e/test_console_browser.py`` drives it in Chromium."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from uuid import UUID

import pytest
from flask.testing import FlaskClient

from application.event_log import BoxofficeApplication
from infrastructure.settings import ApiKey
from interfaces.http import console_data, create_app
from tests.support.service import make_container
from tests.support.world import World

KEYS = (
    ApiKey("ops", frozenset({"admin"}), ApiKey.digest_of("k-ops")),
    ApiKey("alice", frozenset({"commands:read", "commands:write"}), ApiKey.digest_of("k-alice")),
)


@pytest.fixture
def world() -> World:
    world = World(BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}))
    world.create_show(["A1", "A2"], price_cents=1500)
    world.place("paid", ["A1"], "tok_approve")
    world.place("stuck", ["A2"], "tok_outage")  # its charge dead-letters
    return world


@pytest.fixture
def browser(world: World) -> FlaskClient:
    return create_app(make_container(world.app, api_keys=KEYS)).test_client()


def sign_in(browser: FlaskClient, key: str = "k-ops") -> int:
    return browser.post("/console/login", data={"key": key}).status_code


def dead_letter(world: World) -> UUID:
    return next(c.id for c in world.commands() if c.status == "dead_lettered")


def test_only_an_admin_key_signs_in_and_the_page_asks_for_one(browser: FlaskClient) -> None:
    assert b'name="key"' in browser.get("/console").data
    assert browser.get("/console/events").status_code == 401
    assert sign_in(browser, "k-alice") == 401  # a key without the admin scope
    assert sign_in(browser, "nonsense") == 401

    answer = browser.post("/console/login", data={"key": "k-ops"})

    assert answer.status_code == 303
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/console" in cookie
    page = browser.get("/console").data.decode()
    assert 'data-count="succeeded"' in page
    browser.post("/console/logout")
    assert b'name="key"' in browser.get("/console").data


def test_the_page_shows_the_counts_the_lag_the_dead_letters_and_the_stuck_saga(
    browser: FlaskClient, world: World
) -> None:
    sign_in(browser)

    page = browser.get("/console").data.decode()

    succeeded = re.search(r'data-count="succeeded">(\d+)<', page)
    assert succeeded is not None
    assert int(succeeded.group(1)) == sum(c.status == "succeeded" for c in world.commands())
    dead = dead_letter(world)
    assert f'data-dead-letter="{dead}"' in page
    assert f'data-redrive="{dead}"' in page
    stuck = world.saga("stuck").id
    assert f"/console?saga={stuck}" in page
    initial = re.search(r'<script type="application/json" id="initial">(.*?)</script>', page, re.S)
    assert initial is not None
    data = json.loads(initial.group(1))
    assert {v["name"] for v in data["views"]} >= {"command_registry", "shows"}
    assert len(data["series"]) == 30  # 5 minutes of 10 s


def test_a_search_finds_a_saga_s_commands_and_draws_one_s_waterfall(
    browser: FlaskClient, world: World
) -> None:
    sign_in(browser)
    saga_id = world.saga("paid").id

    found = browser.get(f"/console?q={saga_id}").data.decode()
    ids = set(re.findall(r'href="/console\?command=([0-9a-f-]{36})', found))
    assert {c.id for c in world.commands() if c.correlation_id == saga_id} <= {UUID(i) for i in ids}

    chosen = next(c for c in world.commands() if c.correlation_id == saga_id)
    drawn = browser.get(f"/console?command={chosen.id}").data.decode()
    assert drawn.count('<rect x="') >= 4  # accepted, started, outcome, visible at least
    assert "hop-visible" in drawn
    timeline = browser.get(f"/console?saga={saga_id}").data.decode()
    assert 'id="saga-timeline"' in timeline
    assert "confirmed" in timeline
    nothing = browser.get("/console?q=/shows/none").data.decode()
    assert "nothing found" in nothing
    # A client's id finds the commands of every resource it names: the show s1's.
    by_id = browser.get("/console?q=s1").data.decode()
    created = next(c for c in world.commands() if c.command_type == "CreateShow")
    assert f"/console?command={created.id}" in by_id


def test_a_re_drive_needs_the_console_s_header_and_re_drives_once(
    browser: FlaskClient, world: World
) -> None:
    sign_in(browser)
    dead = dead_letter(world)

    assert browser.post(f"/console/redrive/{dead}").status_code == 403
    done = browser.post(f"/console/redrive/{dead}", headers={"X-Boxoffice-Console": "1"})
    again = browser.post(f"/console/redrive/{dead}", headers={"X-Boxoffice-Console": "1"})

    assert done.status_code == 200
    assert done.get_json()["result"] == "redriven"
    assert again.status_code == 409
    assert world.pipeline.get_command(dead).status == "retrying"  # type: ignore[union-attr]


def test_the_event_stream_sends_snapshots(browser: FlaskClient) -> None:
    sign_in(browser)

    answer = browser.get("/console/events", buffered=False)
    first = next(iter(answer.response))
    answer.close()

    assert answer.content_type.startswith("text/event-stream")
    text = first.decode() if isinstance(first, bytes) else str(first)
    assert text.startswith("event: snapshot\ndata: ")
    assert "commands" in json.loads(text.split("data: ", 1)[1])


def test_the_charts_count_the_commands_decided_per_whole_bucket_with_their_latency() -> None:
    now = datetime(2027, 1, 1, 12, 0, 5, tzinfo=UTC)  # 5 s into a bucket: not charted
    decided = [
        # Decided at 11:59:51, 11:59:52 and 11:59:58: the last whole bucket.
        {"submitted_at": "2027-01-01T11:59:50+00:00", "updated_at": "2027-01-01T11:59:51+00:00"},
        {
            "submitted_at": "2027-01-01T11:59:51.900000+00:00",
            "updated_at": "2027-01-01T11:59:52+00:00",
        },
        {"submitted_at": "2027-01-01T11:59:57+00:00", "updated_at": "2027-01-01T11:59:58+00:00"},
        {"submitted_at": "2027-01-01T12:00:01+00:00", "updated_at": "2027-01-01T12:00:02+00:00"},
        {"submitted_at": "2027-01-01T11:50:00+00:00", "updated_at": "2027-01-01T11:50:01+00:00"},
    ]

    points = console_data.series(decided, now)

    assert len(points) == 30
    assert points[-1]["t"] == "2027-01-01T11:59:50+00:00"
    assert points[-1]["per_s"] == 0.3
    assert (points[-1]["p50_ms"], points[-1]["p99_ms"]) == (1000.0, 1000.0)
    assert sum(p["per_s"] for p in points[:-1]) == 0  # 11:50 is outside the window
    assert points[0]["p50_ms"] is None
