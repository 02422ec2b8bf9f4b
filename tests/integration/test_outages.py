"""Every long-running part carries on when PostgreSQL or RabbitMQ goes away and comes back.

The parts under test (web, relay, worker, projector, saga runner) reach both servers
through loopback proxies that the test cuts: every open connection is reset and new
ones are refused, as when a server restarts or the network to it is cut. The test
itself submits and checks through direct connections, which the cut does not touch.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest

from tests.conftest import fresh_database
from tests.e2e.conftest import free_port
from tests.integration.conftest import Stack
from tests.support.faults import TcpProxy
from tests.support.processes import ServiceProcess, http_ready, running, service_env, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

OUTAGE_SECONDS = 8


class Outage:
    """The stack, its parts behind proxies, and the web's address."""

    def __init__(
        self, stack: Stack, parts: list[ServiceProcess], pg: TcpProxy, mq: TcpProxy, base: str
    ) -> None:
        self.stack = stack
        self.parts = parts
        self.pg = pg
        self.mq = mq
        self.base = base

    def get(self, path: str) -> tuple[int, dict[str, str], dict[str, object]]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=10) as answer:  # noqa: S310
                return answer.status, dict(answer.headers), json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), json.loads(error.read())

    def bump_all(self, count: int) -> list[UUID]:
        return [
            self.stack.submit("Bump", key=f"k-{uuid.uuid4().hex[:8]}").command.id
            for _ in range(count)
        ]

    def await_succeeded_and_listed(self, ids: list[UUID], timeout: float) -> None:
        registry = self.stack.container.read_models.views["command_registry"]

        def done() -> bool:
            rows = [registry.get(i) for i in ids]
            return all(r is not None and r["status"] == "succeeded" for r in rows)

        wait_until(done, timeout, f"{len(ids)} commands to succeed and reach the registry")

    def assert_every_part_runs(self) -> None:
        for part in self.parts:
            assert part.process is not None
            assert part.process.poll() is None, f"{part.part} died:\n{part.output()[-3000:]}"


@pytest.fixture
def outage(server_database_url: str, broker_url: str, tmp_path: Path) -> Iterator[Outage]:
    with (
        fresh_database(server_database_url) as database_url,
        TcpProxy.to(database_url, 5432) as pg_proxy,
        TcpProxy.to(broker_url, 5672) as mq_proxy,
    ):
        queue = f"outage.{uuid.uuid4().hex[:8]}"
        stack = Stack(database_url, broker_url, queue, tmp_path)
        port = free_port()
        env = service_env(
            pg_proxy.route(database_url),
            mq_proxy.route(broker_url),
            queue,
            WEB_PORT=str(port),
            WEB_WORKERS="1",
        )
        parts = [
            ServiceProcess(p, env, tmp_path)
            for p in ("web", "relay", "worker", "projector", "saga-runner")
        ]
        with running(*parts):
            base = f"http://127.0.0.1:{port}"
            wait_until(http_ready(base + "/health"), 30, "gunicorn to answer")
            yield Outage(stack, parts, pg_proxy, mq_proxy, base)
        stack.container.close()


def test_every_part_carries_on_after_postgresql_and_rabbitmq_go_away(outage: Outage) -> None:
    before = outage.bump_all(10)
    outage.await_succeeded_and_listed(before, 30)

    # PostgreSQL goes away: reads answer 503 with Retry-After, health names the store.
    outage.pg.cut()
    status, headers, body = outage.get(f"/commands/{before[0]}")
    assert status == 503, body
    assert headers.get("Retry-After")
    assert body["type"] == "/problems/store-unavailable"
    status, _, health = outage.get("/health")
    assert status == 503
    assert health["event_store"]["reachable"] is False  # type: ignore[index]
    assert health["broker"]["reachable"] is True  # type: ignore[index]
    during_pg = outage.bump_all(10)  # accepted by a web process that can reach the store
    time.sleep(OUTAGE_SECONDS)
    outage.pg.restore()
    outage.await_succeeded_and_listed(during_pg, 90)
    status, _, body = outage.get(f"/commands/{during_pg[-1]}")
    assert status == 200, body

    # RabbitMQ goes away: health names the broker; accepted commands wait for it.
    outage.mq.cut()
    status, _, health = outage.get("/health")
    assert status == 503
    assert health["broker"]["reachable"] is False  # type: ignore[index]
    during_mq = outage.bump_all(10)
    time.sleep(OUTAGE_SECONDS)
    outage.mq.restore()
    outage.await_succeeded_and_listed(during_mq, 90)

    outage.assert_every_part_runs()
