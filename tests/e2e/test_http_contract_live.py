"""Every row of docs/design.md §3's table over real HTTP: gunicorn, workers, relay, PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from infrastructure.settings import Settings
from interfaces.bootstrap import migrate
from projections.views import PROJECTIONS
from tests.conftest import fresh_database
from tests.e2e.conftest import (
    READER_TOKEN,
    TOKEN,
    Answer,
    Client,
    LiveService,
    free_port,
)
from tests.support.processes import ServiceProcess, http_ready, running, service_env, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def show(**overrides: Any) -> dict[str, Any]:
    return {
        "title": "Hamlet",
        "starts_at": "2027-01-01T20:00:00Z",
        "seats": ["A1", "A2", "A3"],
        "price_cents": 4500,
        **overrides,
    }


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def test_health_reports_the_event_store_and_the_broker(live: LiveService) -> None:
    answer = live.client().request("GET", "/health")

    assert answer.status == 200
    leases = answer.body.pop("leases")
    assert answer.body == {
        "status": "ok",
        "event_store": {"reachable": True},
        "broker": {"reachable": True},
        "stalled": [],
    }
    # Who holds each single-active part's lease (the parts may still be taking theirs).
    parts = {"relay", "saga-runner", "projection:webhooks"}
    views = {f"projection:{p.name}" for p in PROJECTIONS}
    assert {lease["name"] for lease in leases} <= parts | views
    assert all(lease["holder"].startswith(lease["name"] + "@") for lease in leases)
    assert all(lease["token"] >= 1 and lease["age_seconds"] >= 0 for lease in leases)


def test_prefer_wait_answers_201_with_the_resource_and_the_events_are_stored(
    live: LiveService,
) -> None:
    show_id = new_id()

    answer = live.client().request(
        "PUT", f"/shows/{show_id}", show(), {"Idempotency-Key": show_id, "Prefer": "wait=5"}
    )

    assert answer.status == 201, answer.body
    assert answer.header("Preference-Applied") == "wait=5"
    assert answer.header("Location") == f"/shows/{show_id}"
    assert answer.body["resource"]["seats"]["available"] == ["A1", "A2", "A3"]
    status = live.client().request(
        "GET",
        f"/commands/{answer.body['command_id']}",
        headers={"Consistency-Token": answer.body["consistency_token"]},
    )
    assert status.body["status"] == "succeeded"
    assert [h["status"] for h in status.body["history"]] == ["accepted", "running", "succeeded"]
    with psycopg.connect(live.database_url) as conn:
        topics = conn.execute(
            "SELECT topic FROM boxoffice_events WHERE originator_id = %s "
            "ORDER BY originator_version",
            (uuid.UUID(status.body["aggregate_id"]),),
        ).fetchall()
    assert topics == [("domain.show:Show.ShowScheduled",)]


def test_an_accepted_command_becomes_succeeded_at_its_status_link(live: LiveService) -> None:
    show_id = new_id()
    client = live.client()

    accepted = client.request("PUT", f"/shows/{show_id}", show(), {"Idempotency-Key": show_id})

    assert accepted.status == 202
    assert accepted.body["status"] == "accepted"
    location = accepted.header("Location")
    assert location == f"/commands/{accepted.body['command_id']}"
    assert accepted.header("Retry-After") == "1"

    def succeeded() -> bool:
        return bool(client.request("GET", str(location)).body["status"] == "succeeded")

    wait_until(succeeded, 30, "the command to succeed")
    token = client.request("GET", str(location)).body["consistency_token"]
    read = client.request("GET", f"/shows/{show_id}", headers={"Consistency-Token": token})
    assert read.status == 200
    assert read.body["status"] == "scheduled"


def test_the_same_key_and_payload_get_the_same_answer_and_another_payload_422(
    live: LiveService,
) -> None:
    show_id = new_id()
    client = live.client()
    headers = {"Idempotency-Key": f"create-{show_id}"}

    first = client.request("PUT", f"/shows/{show_id}", show(), headers)
    again = client.request("PUT", f"/shows/{show_id}", show(), headers)
    other = client.request("PUT", f"/shows/{show_id}", show(title="Lear"), headers)

    assert (first.status, again.status) == (202, 202)
    assert again.body["command_id"] == first.body["command_id"]
    assert other.status == 422
    assert other.header("Content-Type") == "application/problem+json"


def test_a_taken_id_is_409_and_a_domain_error_under_wait_is_409(live: LiveService) -> None:
    show_id = new_id()
    client = live.client()
    client.request("PUT", f"/shows/{show_id}", show(), {"Prefer": "wait=5", "Idempotency-Key": "a"})

    taken = client.request("PUT", f"/shows/{show_id}", show(), {"Idempotency-Key": "b"})
    client.request("POST", f"/shows/{show_id}/cancel", {}, {"Prefer": "wait=5"})
    twice = client.request("POST", f"/shows/{show_id}/cancel", {}, {"Prefer": "wait=5"})

    assert taken.status == 409
    assert taken.body["type"] == "/problems/resource-exists"
    assert twice.status == 409
    assert twice.body["type"] == "/problems/show-cancelled"
    assert twice.header("Preference-Applied") == "wait=5"


def test_prefer_wait_still_running_after_the_wait_is_202(
    live: LiveService, server_database_url: str, broker_url: str
) -> None:
    # A web process over a store that no relay or worker serves: commands stay accepted.
    port = free_port()
    with fresh_database(server_database_url) as database_url:
        migrate(Settings(database_url=database_url))
        env = service_env(database_url, broker_url, "e2e.idle", WEB_PORT=str(port))
        web = ServiceProcess("web", env, live.log_dir, name="web-idle")
        with running(web):
            base = f"http://127.0.0.1:{port}"
            wait_until(http_ready(base + "/health"), 30, "gunicorn to answer")
            started = time.monotonic()
            answer = Client(base, token=None).request(
                "PUT", f"/shows/{new_id()}", show(), {"Prefer": "wait=1"}
            )
            waited = time.monotonic() - started

    assert answer.status == 202
    assert answer.header("Preference-Applied") == "wait=1"
    assert answer.body["status"] == "accepted"
    assert answer.body["warnings"]
    assert 1 <= waited < 5


def test_invalid_commands_get_400_with_every_violation(live: LiveService) -> None:
    answer = live.client().request(
        "PUT", "/shows/ok-id", {"title": "", "seats": [], "price_cents": "free"}
    )
    malformed = live.client().request(
        "PUT", "/shows/ok-id", raw=b'{"title":', headers={"Content-Type": "application/json"}
    )

    assert answer.status == 400
    assert {e["location"] for e in answer.body["errors"]} == {
        "body.title",
        "body.starts_at",
        "body.seats",
        "body.price_cents",
    }
    assert malformed.status == 400
    assert malformed.body["type"] == "/problems/malformed-json"


def test_wrong_content_type_is_415_and_a_huge_body_is_413(live: LiveService) -> None:
    client = live.client()

    wrong_type = client.request(
        "PUT", "/shows/x1", raw=b"title=x", headers={"Content-Type": "text/plain"}
    )
    huge = client.request(
        "PUT",
        "/shows/x1",
        raw=b'{"title":"' + b"x" * 70_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )

    assert wrong_type.status == 415
    assert huge.status == 413
    assert huge.header("Content-Type") == "application/problem+json"


def test_missing_credentials_are_401_and_a_reader_submitting_is_403(live: LiveService) -> None:
    anonymous = live.client(token=None).request("PUT", "/shows/x2", show())
    reader = live.client(token=READER_TOKEN).request("PUT", "/shows/x2", show())
    reader_reads = live.client(token=READER_TOKEN).request("GET", "/health")

    assert anonymous.status == 401
    assert anonymous.header("WWW-Authenticate") is not None
    assert reader.status == 403
    assert reader_reads.status == 200


def test_an_unknown_command_is_404(live: LiveService) -> None:
    assert live.client().request("GET", f"/commands/{uuid.uuid4()}").status == 404


def test_an_unreachable_event_store_is_503_and_nothing_is_recorded(
    live: LiveService, broker_url: str
) -> None:
    port = free_port()
    env = service_env(
        "postgresql://postgres@127.0.0.1:9/nowhere",
        broker_url,
        "unused",
        WEB_PORT=str(port),
        DB_CONNECT_TIMEOUT="1",
    )
    web = ServiceProcess("web", env, live.log_dir, name="web-without-store")
    with running(web):
        base = f"http://127.0.0.1:{port}"
        wait_until(http_ready(base + "/health"), 30, "gunicorn to answer")
        started = time.monotonic()
        answer: Answer = Client(base, token=None).request(
            "PUT", "/shows/s1", show(), {"Idempotency-Key": "k"}
        )
        elapsed = time.monotonic() - started
        health = Client(base, token=None).request("GET", "/health")

    assert answer.status == 503
    assert answer.header("Retry-After") == "5"
    assert elapsed < 30
    assert health.status == 503
    assert health.body["event_store"]["reachable"] is False


def _raw_exchange(live: LiveService, request: bytes) -> tuple[bytes, bool]:
    """Send ``request`` on a fresh socket; the answer's head, and whether the server
    closed the connection after it."""
    host, port = live.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        with contextlib.suppress(OSError):  # the server may stop reading once it answered
            sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        rest = b""
        try:
            while chunk := sock.recv(65536):
                rest += chunk
        except TimeoutError:
            return answer, False
        return answer, True


def test_a_chunked_body_over_the_limit_is_413_and_the_connection_is_closed(
    live: LiveService,
) -> None:
    body = json.dumps({**show(), "title": "x" * 100_000}).encode()
    chunks = b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n"
        for part in (body[i : i + 8192] for i in range(0, len(body), 8192))
    )
    head = (
        "PUT /shows/chunked HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()

    answer, closed = _raw_exchange(live, head + chunks + b"0\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert closed
    assert live.client().request("GET", "/shows/chunked").status == 404


def test_a_declared_length_over_the_limit_is_413_and_the_connection_is_closed(
    live: LiveService,
) -> None:
    head = (
        "PUT /shows/big HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: 10000000\r\n\r\n"
    ).encode()

    answer, closed = _raw_exchange(live, head + b"{" * 1000)

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert closed


def test_each_web_worker_listens_on_a_socket_of_its_own(live: LiveService) -> None:
    """The kernel then spreads connections over the workers (SO_REUSEPORT): on one
    shared socket, keep-alive clients could all land in one process."""
    port = int(live.base.rsplit(":", 1)[1])
    listening = [
        line
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        # local address 0100007F:PORT (127.0.0.1), state 0A (LISTEN)
        if line.split()[1] == f"0100007F:{port:04X}" and line.split()[3] == "0A"
    ]

    assert len(listening) == 2  # WEB_WORKERS of the live service
