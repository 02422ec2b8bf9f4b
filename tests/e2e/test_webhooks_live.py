"""Webhooks over real HTTP: a loopback receiver that first answers 500."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from infrastructure.webhooks.signature import verify
from tests.e2e.conftest import WEBHOOK_SECRET, LiveService
from tests.support.processes import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


class Receiver(ThreadingHTTPServer):
    """Records every delivery; answers 500 to the first one of each delivery id."""

    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), ReceiverHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks"


class ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        delivery = self.headers["Boxoffice-Delivery"]
        with self.server.lock:
            first = all(d["id"] != delivery for d in self.server.deliveries)
            status = 500 if first else 204
            self.server.deliveries.append(
                {
                    "id": delivery,
                    "status": status,
                    "signed": verify(WEBHOOK_SECRET, self.headers["Boxoffice-Signature"], body),
                    "body": body,
                }
            )
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_the_signed_terminal_status_is_acknowledged_once_despite_a_500(
    live: LiveService, receiver: Receiver
) -> None:
    show_id = uuid.uuid4().hex[:10]
    accepted = live.client().request(
        "PUT",
        f"/shows/{show_id}",
        {"title": "Lear", "starts_at": "2027-02-01T20:00:00Z", "seats": ["B1"], "price_cents": 1},
        {"Idempotency-Key": show_id, "Callback-Url": receiver.url},
    )
    assert accepted.status == 202

    wait_until(lambda: len(receiver.deliveries) >= 2, 30, "the retried delivery")
    time.sleep(2)  # long enough for a wrongful third delivery to arrive

    deliveries = receiver.deliveries
    assert [d["status"] for d in deliveries] == [500, 204]
    assert len({d["id"] for d in deliveries}) == 1
    assert all(d["signed"] for d in deliveries)
    assert b'"status": "succeeded"' in deliveries[-1]["body"]
    assert accepted.body["command_id"].encode() in deliveries[-1]["body"]
