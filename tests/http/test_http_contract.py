"""The HTTP contract of docs/design.md §3 through Flask's test client, on the in-memory store.

The same rows are exercised over real sockets, gunicorn and workers in tests/e2e.
"""

from __future__ import annotations

import json
import threading
from typing import Any
from uuid import UUID, uuid4

import pytest
from flask.testing import FlaskClient

from application.event_log import BoxofficeApplication
from infrastructure.settings import Settings
from infrastructure.subscription import subscribe
from interfaces.bootstrap import Container, bootstrap
from interfaces.http import create_app
from tests.support.service import make_container

SHOW = {
    "title": "Hamlet",
    "starts_at": "2027-01-01T20:00:00Z",
    "seats": ["A1", "A2"],
    "price_cents": 4500,
}
JSON = {"Content-Type": "application/json"}


def test_a_command_is_accepted_with_a_link_to_its_status(client: FlaskClient) -> None:
    response = client.put("/shows/s1", json=SHOW, headers={"Idempotency-Key": "k1"})

    assert response.status_code == 202
    body = response.get_json()
    assert response.headers["Location"] == f"/commands/{body['command_id']}"
    assert response.headers["Retry-After"] == "1"
    assert body["status"] == "accepted"
    assert body["links"]["resource"] == "/shows/s1"
    assert "warnings" not in body
    status = client.get(response.headers["Location"])
    assert status.status_code == 200
    assert status.get_json()["status"] == "accepted"
    assert status.get_json()["type"] == "CreateShow"


def test_without_an_idempotency_key_the_answer_warns(client: FlaskClient) -> None:
    response = client.put("/shows/s1", json=SHOW)

    assert response.status_code == 202
    assert "not safely retryable" in response.get_json()["warnings"][0].replace(
        "retrying this request may run the command twice", "not safely retryable"
    )


def test_the_same_key_and_payload_get_the_original_answer(client: FlaskClient) -> None:
    first = client.put("/shows/s1", json=SHOW, headers={"Idempotency-Key": "k1"})
    again = client.put("/shows/s1", json=SHOW, headers={"Idempotency-Key": "k1"})

    assert again.status_code == 202
    assert again.get_json()["command_id"] == first.get_json()["command_id"]


def test_the_same_key_with_another_payload_is_422(client: FlaskClient) -> None:
    client.put("/shows/s1", json=SHOW, headers={"Idempotency-Key": "k1"})

    response = client.put(
        "/shows/s1", json={**SHOW, "title": "Lear"}, headers={"Idempotency-Key": "k1"}
    )

    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == "/problems/idempotency-key-reused"


def test_every_violation_is_listed_in_one_400(client: FlaskClient) -> None:
    response = client.put(
        "/shows/-bad",
        json={"title": "", "starts_at": "soon", "seats": [], "price_cents": -1, "extra": 1},
    )

    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    locations = {e["location"] for e in response.get_json()["errors"]}
    assert locations == {
        "path.show_id",
        "body.title",
        "body.starts_at",
        "body.seats",
        "body.price_cents",
        "body.extra",
    }


@pytest.mark.parametrize("text", ["Ham\x00let", "Ham\x07let", "Ham\x9blet", "Ham\ud800let"])
def test_control_characters_and_lone_surrogates_in_text_are_400_and_record_nothing(
    client: FlaskClient, app: BoxofficeApplication, text: str
) -> None:
    head = app.recorder.max_notification_id()

    response = client.put("/shows/s1", data=json.dumps({**SHOW, "title": text}), headers=JSON)

    assert response.status_code == 400, response.get_json()
    errors = response.get_json()["errors"]
    assert [e["location"] for e in errors] == ["body.title"]
    assert ("valid string" if "\ud800" in text else "control character") in errors[0]["message"]
    assert app.recorder.max_notification_id() == head


def test_a_control_character_in_a_list_item_names_the_field(client: FlaskClient) -> None:
    body = json.dumps({**SHOW, "seats": ["A1", "A\x002"]})

    response = client.put("/shows/s1", data=body, headers=JSON)

    assert response.status_code == 400
    assert {e["location"] for e in response.get_json()["errors"]} == {"body.seats[1]"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [("{", "/problems/malformed-json"), ("[1]", "/problems/validation-error")],
)
def test_a_body_that_is_not_a_json_object_is_400(
    client: FlaskClient, data: str, expected: str
) -> None:
    response = client.put("/shows/s1", data=data, headers=JSON)

    assert response.status_code == 400
    assert response.get_json()["type"] == expected


def test_a_path_id_contradicted_by_the_body_is_400(client: FlaskClient) -> None:
    response = client.put("/shows/s1", json={**SHOW, "show_id": "s2"})

    assert response.status_code == 400
    assert response.get_json()["errors"][0]["location"] == "body.show_id"


def test_a_bad_idempotency_key_is_400(client: FlaskClient) -> None:
    response = client.put("/shows/s1", json=SHOW, headers={"Idempotency-Key": "x" * 256})

    assert response.status_code == 400
    assert response.get_json()["errors"][0]["location"] == "header.Idempotency-Key"


def test_a_taken_id_is_409_at_accept_time(client: FlaskClient, container: Container) -> None:
    first = client.put("/shows/s1", json=SHOW, headers={"Idempotency-Key": "k1"})
    container.pipeline.execute(_command_id(first.get_json()), 1, "w")

    response = client.put("/shows/s1", json=SHOW, headers={"Idempotency-Key": "k2"})

    assert response.status_code == 409
    assert response.get_json()["type"] == "/problems/resource-exists"


def test_wrong_content_type_is_415(client: FlaskClient) -> None:
    response = client.put("/shows/s1", data="title=x", content_type="text/plain")

    assert response.status_code == 415
    assert response.mimetype == "application/problem+json"


def test_a_body_over_the_limit_is_413(app: BoxofficeApplication) -> None:
    client = create_app(make_container(app, max_body_bytes=100)).test_client()

    response = client.put("/shows/s1", json={**SHOW, "title": "x" * 200})

    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"


def test_an_unreachable_event_store_is_503_and_records_nothing() -> None:
    settings = Settings(database_url="postgresql://postgres@127.0.0.1:9/none", db_connect_timeout=1)
    # The store is built on first use, inside the request, as in the web process.
    client = create_app(bootstrap(settings)).test_client()

    response = client.put("/shows/s1", json=SHOW, headers={"Idempotency-Key": "k1"})

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.mimetype == "application/problem+json"


def test_an_unknown_command_id_is_404_never_pending(client: FlaskClient) -> None:
    assert client.get("/commands/00000000-0000-0000-0000-000000000000").status_code == 404
    assert client.get("/commands/not-a-uuid").status_code == 404


def test_prefer_wait_answers_synchronously_when_the_outcome_arrives(
    client: FlaskClient, container: Container
) -> None:
    worker = _execute_when_accepted(container)

    response = client.put("/shows/s1", json=SHOW, headers={"Prefer": "wait=5"})
    worker.join()

    assert response.status_code == 201
    assert response.headers["Preference-Applied"] == "wait=5"
    assert response.headers["Location"] == "/shows/s1"
    body = response.get_json()
    assert body["status"] == "succeeded"
    assert body["resource"]["seats"]["available"] == ["A1", "A2"]


def test_prefer_wait_reports_a_domain_error_as_a_problem(
    client: FlaskClient, container: Container
) -> None:
    worker = _execute_when_accepted(container)

    response = client.post("/shows/nope/cancel", headers={"Prefer": "wait=5"})
    worker.join()

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.headers["Preference-Applied"] == "wait=5"
    assert response.get_json()["links"]["self"].startswith("/commands/")


def test_prefer_wait_still_running_after_the_wait_is_202(client: FlaskClient) -> None:
    response = client.put("/shows/s1", json=SHOW, headers={"Prefer": "wait=0.2"})

    assert response.status_code == 202
    assert response.headers["Preference-Applied"] == "wait=0.2"


def _command_id(body: dict[str, Any]) -> UUID:
    return UUID(body["command_id"])


def _execute_when_accepted(container: Container) -> threading.Thread:
    """Plays the worker: runs the next accepted command as soon as it is recorded."""
    app = container.app
    start = app.recorder.max_notification_id()

    def run() -> None:
        with subscribe(app.recorder, start) as subscription:
            for notification in subscription:
                if notification.topic.endswith("CommandAccepted"):
                    command_id = UUID(str(notification.originator_id))
                    container.pipeline.execute(command_id, 1, "test-worker")
                    return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def server_sent_events(text: str) -> list[dict[str, Any]]:
    """Parse an event stream into ``{"id", "event", "data"}`` dicts (comments dropped)."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if fields:
            events.append({**fields, "data": json.loads(fields["data"])})
    return events


def test_status_changes_stream_as_server_sent_events_until_terminal(
    client: FlaskClient, container: Container
) -> None:
    accepted = client.put("/shows/s1", json=SHOW, headers={"Idempotency-Key": "k1"})
    command_id = _command_id(accepted.get_json())
    # The worker runs while the stream is open: its changes are pushed, not polled.
    threading.Timer(0.3, container.pipeline.execute, (command_id, 1, "w")).start()

    response = client.get(f"/commands/{command_id}/events")

    assert response.mimetype == "text/event-stream"
    events = server_sent_events(response.get_data(as_text=True))
    assert [e["data"]["status"] for e in events] == ["accepted", "running", "succeeded"]
    assert [e["id"] for e in events] == ["0", "1", "2"]
    assert {e["event"] for e in events} == {"status"}


def test_a_reconnecting_event_stream_resumes_after_last_event_id(
    client: FlaskClient, container: Container
) -> None:
    accepted = client.put("/shows/s1", json=SHOW, headers={"Idempotency-Key": "k1"})
    command_id = _command_id(accepted.get_json())
    container.pipeline.execute(command_id, 1, "w")

    resumed = client.get(f"/commands/{command_id}/events", headers={"Last-Event-ID": "1"})
    bad = client.get(f"/commands/{command_id}/events", headers={"Last-Event-ID": "x"})
    unknown = client.get(f"/commands/{uuid4()}/events")

    events = server_sent_events(resumed.get_data(as_text=True))
    assert [(e["id"], e["data"]["status"]) for e in events] == [("2", "succeeded")]
    assert bad.status_code == 400
    assert unknown.status_code == 404


def test_a_negative_last_event_id_replays_the_whole_stream(
    client: FlaskClient, container: Container
) -> None:
    accepted = client.put("/shows/s1", json=SHOW, headers={"Idempotency-Key": "k1"})
    command_id = _command_id(accepted.get_json())
    container.pipeline.execute(command_id, 1, "w")

    response = client.get(f"/commands/{command_id}/events", headers={"Last-Event-ID": "-500"})

    events = server_sent_events(response.get_data(as_text=True))
    assert [e["data"]["status"] for e in events] == ["accepted", "running", "succeeded"]


def test_a_callback_url_needs_webhooks_enabled_and_an_http_url(
    app: BoxofficeApplication,
) -> None:
    disabled = create_app(make_container(app)).test_client()
    enabled = create_app(make_container(app, webhook_secret="s" * 32)).test_client()

    refused = disabled.put("/shows/s1", json=SHOW, headers={"Callback-Url": "http://x/hook"})
    bad = enabled.put("/shows/s1", json=SHOW, headers={"Callback-Url": "ftp://x/hook"})
    good = enabled.put("/shows/s1", json=SHOW, headers={"Callback-Url": "http://x/hook"})

    assert refused.status_code == 400
    assert "WEBHOOK_SECRET" in refused.get_json()["errors"][0]["message"]
    assert bad.status_code == 400
    assert bad.get_json()["errors"][0]["location"] == "header.Callback-Url"
    assert good.status_code == 202


def test_a_command_past_the_retention_window_is_gone(app: BoxofficeApplication) -> None:
    fresh = create_app(make_container(app)).test_client()
    expired = create_app(make_container(app, command_retention_days=0)).test_client()
    accepted = fresh.put("/shows/s1", json=SHOW, headers={"Idempotency-Key": "k1"})
    location = accepted.headers["Location"]

    assert fresh.get(location).status_code == 200
    gone = expired.get(location)
    assert gone.status_code == 410
    assert gone.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    ("path", "headers", "location"),
    [
        ("/commands?limit=%C2%B2", {}, "query.limit"),
        ("/commands?type=%00Show", {}, "query.type"),
        ("/commands/{id}/events", {"Last-Event-ID": "--5"}, "header.Last-Event-ID"),
        ("/commands/{id}/events", {"Last-Event-ID": "\u00b2"}, "header.Last-Event-ID"),
        ("/commands/{id}", {"Consistency-Token": "\u00b2"}, "header.Consistency-Token"),
        ("/shows/s1", {"Consistency-Token": "1\u00b2"}, "header.Consistency-Token"),
    ],
)
def test_query_and_header_values_that_cannot_be_read_are_a_400(
    client: FlaskClient, path: str, headers: dict[str, str], location: str
) -> None:
    accepted = client.put("/shows/s1", json=SHOW, headers={"Idempotency-Key": "k1"})
    command_id = accepted.get_json()["command_id"]

    response = client.get(path.format(id=command_id), headers=headers)

    assert response.status_code == 400
    assert response.get_json()["errors"][0]["location"] == location
