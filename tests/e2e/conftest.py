"""End-to-end: the HTTP contract over real sockets, gunicorn, Celery workers and the relay."""

from __future__ import annotations

import json
import socket
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infrastructure.settings import ApiKey, Settings
from interfaces.bootstrap import migrate
from tests.conftest import fresh_database
from tests.support.otlp import Collector, collecting
from tests.support.processes import ServiceProcess, http_ready, running, service_env, wait_until

TOKEN = "e2e-writer-token"
READER_TOKEN = "e2e-reader-token"
ADMIN_TOKEN = "e2e-admin-token"
WEBHOOK_SECRET = "e2e-webhook-secret-0123456789"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def stack_database(
    server_database_url: str, broker_url: str, prefix: str, **extra: str
) -> Iterator[tuple[str, dict[str, str], int]]:
    """A fresh database with every table, the environment of a stack's parts on it (a
    command queue of its own, two web processes on a free port, ``extra``), and that
    port."""
    queue = f"{prefix}.{uuid.uuid4().hex[:6]}"
    port = free_port()
    with fresh_database(server_database_url) as database_url:
        migrate(Settings(database_url=database_url, broker_url=broker_url, command_queue=queue))
        yield (
            database_url,
            service_env(
                database_url, broker_url, queue, WEB_PORT=str(port), WEB_WORKERS="2", **extra
            ),
            port,
        )


@dataclass(frozen=True)
class Answer:
    """An HTTP response, read whole."""

    status: int
    headers: dict[str, str]
    body: Any

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


class Client:
    """A tiny HTTP client over real sockets (urllib), carrying the writer's token."""

    def __init__(self, base: str, token: str | None = TOKEN) -> None:
        self.base = base
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Answer:
        sent = {"Content-Type": "application/json"} if body is not None else {}
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        sent.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(  # noqa: S310 - loopback test URL
            self.base + path, data=data, method=method, headers=sent
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                return _answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return _answer(error.code, dict(error.headers), error.read())

    def request_text(self, method: str, path: str) -> str:
        """The whole body of a response as text (a server-sent event stream, say)."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        request = urllib.request.Request(  # noqa: S310 - loopback test URL
            self.base + path, method=method, headers=headers
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return str(response.read().decode())


def _answer(status: int, headers: dict[str, str], content: bytes) -> Answer:
    body = json.loads(content) if content.strip() else None
    return Answer(status, headers, body)


@dataclass(frozen=True)
class LiveService:
    """The running service of one test module."""

    base: str
    database_url: str
    settings: Settings
    log_dir: Path
    # Where the worker and the projector serve their Prometheus counters (METRICS_PORT).
    worker_metrics: str
    projector_metrics: str
    # The spans every part exports (OTLP over HTTP), test_traces_live.py reads them.
    traces: Collector

    def client(self, token: str | None = TOKEN) -> Client:
        return Client(self.base, token)


def create_show(
    live: LiveService, show_id: str, seat: str = "B1", price_cents: int = 1, wait: bool = True
) -> dict[str, Any]:
    """A one-seat show created over HTTP: its 201 body, waited for (``Prefer: wait``),
    or without ``wait`` its 202 body."""
    headers = {"Idempotency-Key": f"show-{show_id}"}
    if wait:
        headers["Prefer"] = "wait=5"
    answer = live.client().request(
        "PUT",
        f"/shows/{show_id}",
        {
            "title": "Lear",
            "starts_at": "2027-02-01T20:00:00Z",
            "seats": [seat],
            "price_cents": price_cents,
        },
        headers,
    )
    assert answer.status == (201 if wait else 202), answer.body
    body: dict[str, Any] = answer.body
    return body


def place_reservation(
    live: LiveService,
    show_id: str,
    reservation_id: str,
    card: str = "tok_approve",
    customer: str = "ann",
    wait: bool = True,
    headers: dict[str, str] | None = None,
) -> Answer:
    """Seat A1 of ``show_id`` reserved over HTTP and waited for (``Prefer: wait``: a
    201), or without ``wait`` its 202; ``headers`` are sent too."""
    sent = {"Idempotency-Key": f"reserve-{reservation_id}", **(headers or {})}
    if wait:
        sent["Prefer"] = "wait=5"
    answer = live.client().request(
        "PUT",
        f"/reservations/{reservation_id}",
        {"show_id": show_id, "customer_id": customer, "seats": ["A1"], "card_token": card},
        sent,
    )
    assert answer.status == (201 if wait else 202), answer.body
    return answer


def reservation_settled(live: LiveService, reservation_id: str, status: str = "confirmed") -> str:
    """Wait until the reservation has ``status``; returns its saga's id."""
    client = live.client()

    def reached() -> bool:
        answer = client.request("GET", f"/reservations/{reservation_id}")
        return answer.status == 200 and answer.body["status"] == status

    wait_until(reached, 30, f"the reservation to be {status}")
    return str(client.request("GET", f"/reservations/{reservation_id}").body["saga_id"])


def log_lines(live: LiveService, part: str) -> list[dict[str, Any]]:
    """The JSON lines of ``part``'s log (Celery's banner is not a log line: skipped)."""
    return [
        json.loads(text)
        for text in (live.log_dir / f"{part}.log").read_text(errors="replace").splitlines()
        if text.startswith("{")
    ]


@pytest.fixture(scope="module")
def live(
    server_database_url: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    log_dir = tmp_path_factory.mktemp("e2e")
    queue = f"e2e.{log_dir.name}"
    port = free_port()
    with fresh_database(server_database_url) as database_url, collecting() as traces:
        settings = Settings(database_url=database_url, broker_url=broker_url, command_queue=queue)
        migrate(settings)
        env = service_env(
            database_url,
            broker_url,
            queue,
            WEB_PORT=str(port),
            WEB_WORKERS="2",
            API_KEYS=f"alice commands:write,commands:read sha256:{ApiKey.digest_of(TOKEN)};"
            f"viewer commands:read sha256:{ApiKey.digest_of(READER_TOKEN)};"
            f"ops admin sha256:{ApiKey.digest_of(ADMIN_TOKEN)}",
            WEBHOOK_SECRET=WEBHOOK_SECRET,
            WEBHOOK_ALLOW_NETWORKS="127.0.0.0/8",  # the test's receivers are on loopback
            # Every line as JSON, our own lines down to DEBUG: test_logs_live.py reads them.
            LOG_FORMAT="json",
            LOG_LEVEL="DEBUG",
            # Traced, exported to the test's receiver without the default 5 s wait.
            OTEL_TRACES_EXPORTER="otlp",
            TRACE_SQL="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=traces.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="100",
        )
        web = ServiceProcess("web", env, log_dir)
        metrics_port = free_port()
        worker = ServiceProcess("worker", {**env, "METRICS_PORT": str(metrics_port)}, log_dir)
        projector_port = free_port()
        projector = ServiceProcess(
            "projector", {**env, "METRICS_PORT": str(projector_port)}, log_dir
        )
        others = [
            projector,
            *(ServiceProcess(part, env, log_dir) for part in ("relay", "saga-runner")),
        ]
        with running(web, worker, *others):
            base = f"http://127.0.0.1:{port}"
            wait_until(http_ready(base + "/health"), 30, "gunicorn to answer")
            worker_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
            projector_metrics = f"http://127.0.0.1:{projector_port}/metrics"
            yield LiveService(
                base, database_url, settings, log_dir, worker_metrics, projector_metrics, traces
            )
