"""What a hostile or careless client sends gets a 4xx problem that says what is wrong,
and leaves nothing in the event store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from application.event_log import BoxofficeApplication
from interfaces.http import create_app
from tests.support.service import make_container
from tests.support.submit import submit

SHOW = {
    "title": "Hamlet",
    "starts_at": "2027-01-01T20:00:00Z",
    "seats": ["A1", "A2"],
    "price_cents": 4500,
}


@pytest.fixture
def memory() -> Iterator[tuple[FlaskClient, BoxofficeApplication]]:
    app = BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    container = make_container(app, webhook_secret="s" * 16)
    yield create_app(container).test_client(), app
    container.close()
    app.close()


def refused(memory: tuple[FlaskClient, BoxofficeApplication], **request: Any) -> dict[str, Any]:
    """Send a command request; check it is a 4xx problem that recorded nothing."""
    client, app = memory
    head = app.recorder.max_notification_id()
    response = client.open(**{"method": "PUT", "path": "/shows/s1", **request})
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert app.recorder.max_notification_id() == head
    body: dict[str, Any] = response.get_json()
    assert {"type", "title", "status", "detail", "instance"} <= set(body)
    return body


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price_cents", "100"),
        ("price_cents", True),
        ("price_cents", 1.5),
        ("starts_at", "2027-01-01T20:00:00"),
        ("starts_at", "2027-01-01"),
        ("starts_at", 1798833600),
        ("starts_at", "0001-01-01T00:00:00Z"),
        ("starts_at", "2027-02-30T20:00:00Z"),
        ("title", "   "),
        ("title", ""),
        ("seats", ["A1", "A1"]),
        ("seats", [" "]),
    ],
)
def test_a_value_the_schema_does_not_allow_is_refused_not_coerced(
    memory: tuple[FlaskClient, BoxofficeApplication], field: str, value: Any
) -> None:
    body = refused(memory, json={**SHOW, field: value})

    assert body["status"] == 400
    assert len(body["errors"]) == 1
    assert body["errors"][0]["location"].startswith(f"body.{field}")


def test_json_nested_ten_thousand_deep_is_refused_before_it_is_parsed(
    memory: tuple[FlaskClient, BoxofficeApplication],
) -> None:
    deep = "[" * 10_000 + "]" * 10_000
    raw = json.dumps({**SHOW, "title": "x"}).replace('"x"', deep)

    body = refused(memory, data=raw, content_type="application/json")

    assert body["type"] == "/problems/malformed-json"
    assert "deeper than 32" in body["errors"][0]["message"]


def test_a_member_named_twice_is_refused_with_its_name(
    memory: tuple[FlaskClient, BoxofficeApplication],
) -> None:
    raw = json.dumps(SHOW)[:-1] + ', "title": "Macbeth", "seats": ["B1"]}'

    body = refused(memory, data=raw, content_type="application/json")

    # Well-formed JSON (its grammar allows it), but not one value per field.
    assert body["type"] == "/problems/validation-error"
    assert [e["location"] for e in body["errors"]] == ["body.title", "body.seats"]


def test_nesting_inside_strings_does_not_count(
    memory: tuple[FlaskClient, BoxofficeApplication],
) -> None:
    client, _ = memory
    response = client.put("/shows/s1", json={**SHOW, "title": "[" * 100 + "{" * 100})

    assert response.status_code == 202


def test_every_violation_of_headers_and_body_is_listed_in_one_400(
    memory: tuple[FlaskClient, BoxofficeApplication],
) -> None:
    body = refused(
        memory,
        json={**SHOW, "price_cents": "1", "extra": 1},
        headers={"Idempotency-Key": "k\u00e9", "Callback-Url": "ftp://x"},
    )

    assert {e["location"] for e in body["errors"]} == {
        "header.Idempotency-Key",
        "header.Callback-Url",
        "body.price_cents",
        "body.extra",
    }
    assert body["detail"] == "4 violations: see errors"
    assert body["instance"] == "/shows/s1"


def test_every_problem_type_explains_itself(
    memory: tuple[FlaskClient, BoxofficeApplication],
) -> None:
    client, _ = memory
    types = {
        refused(memory, json={**SHOW, "title": ""})["type"],
        refused(memory, data="{", content_type="application/json")["type"],
        refused(memory, data="x", content_type="text/plain")["type"],
        client.get("/commands/nope").get_json()["type"],
        client.delete("/shows/s1").get_json()["type"],
    }

    for type_uri in types:
        page = client.get(type_uri)
        assert page.status_code == 200, type_uri
        assert page.mimetype == "text/html"
    assert client.get("/problems/no-such-thing").status_code == 404


def test_prefer_is_read_as_rfc_7240_says(memory: tuple[FlaskClient, BoxofficeApplication]) -> None:
    client, _ = memory
    quoted = client.put("/shows/s1", json=SHOW, headers={"Prefer": 'wait="0.1"'})
    exponent = client.put("/shows/s2", json=SHOW, headers={"Prefer": "wait=1e1"})
    parameter = client.put("/shows/s3", json=SHOW, headers={"Prefer": "handling=strict; wait=9"})

    assert quoted.headers["Preference-Applied"] == "wait=0.1"
    assert "Preference-Applied" not in exponent.headers  # not a number of seconds: ignored
    assert "Preference-Applied" not in parameter.headers  # wait=9 is a parameter there
    assert all("Prefer" in r.headers["Vary"] for r in (quoted, exponent, parameter))


def test_tracebacks_stay_with_the_operator(
    memory: tuple[FlaskClient, BoxofficeApplication],
) -> None:
    client, app = memory
    pipeline = make_container(app).pipeline
    command = submit(
        pipeline, "Flaky", submitted_by="anonymous", key="t", failures=9, attempts_file="/dev/null"
    ).command
    pipeline.execute(command.id, 1, "w")

    document = client.get(f"/commands/{command.id}").get_json()

    assert document["attempts"][0]["error"]["type"] == "ConnectionError"
    assert "traceback" not in json.dumps(document).lower()
    # The operator's record has it.
    recorded = pipeline.get_command(command.id)
    assert recorded is not None
    assert "Traceback" in recorded.attempts[0]["error"]["traceback"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:8000/hook",
        "http://127.0.0.1/hook",
        "http://10.0.0.1/hook",
        "http://[::1]/hook",
        "http://[fd00:ec2::254]/hook",
        "http://app.localhost/hook",
    ],
)
def test_a_callback_to_an_inside_address_is_refused_at_once(
    memory: tuple[FlaskClient, BoxofficeApplication], url: str
) -> None:
    body = refused(memory, json=SHOW, headers={"Callback-Url": url})

    assert body["errors"][0]["location"] == "header.Callback-Url"
    assert "public address" in body["errors"][0]["message"]
