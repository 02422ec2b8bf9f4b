"""Webhook delivery on PostgreSQL: receivers that cannot hold others up or be turned on us."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from eventsourcing.persistence import Tracking

from infrastructure.event_store import build_view
from infrastructure.settings import Settings
from infrastructure.webhooks.addresses import AddressPolicy
from infrastructure.webhooks.dispatcher import WebhookDispatcher
from infrastructure.webhooks.outbox import Delivery, WebhookOutbox
from infrastructure.webhooks.sender import WebhookSender
from infrastructure.webhooks.signature import verify
from interfaces.bootstrap import migrate
from tests.support.processes import wait_until

pytestmark = pytest.mark.postgres
SECRET = "integration-webhook-secret"
LOOPBACK = AddressPolicy.allowing(["127.0.0.0/8"])


class Receiver(ThreadingHTTPServer):
    """Records deliveries; ``behaviour`` decides each answer."""

    daemon_threads = True

    def __init__(self, behaviour: str = "ok", redirect_to: str = "") -> None:
        self.behaviour = behaviour
        self.redirect_to = redirect_to
        self.received: list[tuple[float, str, bool]] = []
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.server_address[1]}/hooks"


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        signed = verify(SECRET, self.headers["Boxoffice-Signature"], body)
        self.server.received.append((time.monotonic(), self.headers["Boxoffice-Delivery"], signed))
        if self.server.behaviour == "silent":
            time.sleep(30)  # never answers within the sender's time-out
            return
        if self.server.behaviour == "redirect":
            self.send_response(307)
            self.send_header("Location", self.server.redirect_to)
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def outbox(database_url: str) -> Iterator[WebhookOutbox]:
    settings = Settings(database_url=database_url, db_pool_size=10)
    migrate(settings)
    view = build_view(settings, WebhookDispatcher.name, WebhookOutbox)
    yield view
    view.datastore.close()


def enqueue(outbox: WebhookOutbox, url: str, number: int) -> str:
    delivery_id = f"delivery-{number}"
    outbox.enqueue(Delivery(delivery_id, url, b'{"status": "succeeded"}', 0), Tracking("t", number))
    return delivery_id


def sending(outbox: WebhookOutbox, policy: AddressPolicy, **options: Any) -> threading.Event:
    stop = threading.Event()
    sender = WebhookSender(outbox, SECRET, policy, **options)
    threading.Thread(target=sender.run, args=(stop,), daemon=True).start()
    return stop


def status_of(outbox: WebhookOutbox, delivery_id: str) -> dict[str, Any]:
    return next(d for d in outbox.listed(None, 100) if d["delivery_id"] == delivery_id)


def test_a_silent_receiver_does_not_hold_up_another_and_is_parked(outbox: WebhookOutbox) -> None:
    silent, prompt = Receiver("silent"), Receiver()
    stuck = [enqueue(outbox, silent.url(), n) for n in range(1, 6)]
    enqueue(outbox, prompt.url(), 6)
    started = time.monotonic()

    stop = sending(outbox, LOOPBACK, timeout=1.0, threads=4, max_attempts=2, base_delay=0.1)
    try:
        wait_until(lambda: bool(prompt.received), 10, "the prompt receiver's delivery")
        waited = prompt.received[0][0] - started
        wait_until(
            lambda: all(status_of(outbox, d)["status"] == "parked" for d in stuck),
            30,
            "the silent receiver's deliveries to be parked",
        )
    finally:
        stop.set()

    # Five deliveries to the silent one, at most two at a time: the other went first.
    assert waited < 1.5, waited
    assert prompt.received[0][2]  # signed
    parked = status_of(outbox, stuck[0])
    assert parked["attempts"] == 2
    assert "timed out" in parked["last_error"]
    assert {d["delivery_id"] for d in outbox.listed("parked", 100)} == set(stuck)


def test_an_inside_address_is_never_posted_to(outbox: WebhookOutbox) -> None:
    receiver = Receiver()
    resolved = socket.getaddrinfo(socket.gethostname(), 80)[0][4][0]
    assert not ipaddress.ip_address(resolved).is_global  # the premise: this host is inside
    by_name = enqueue(outbox, receiver.url(socket.gethostname()), 1)
    mapped = enqueue(outbox, receiver.url("[::ffff:127.0.0.1]"), 2)

    stop = sending(outbox, AddressPolicy(), timeout=1.0, threads=2)
    try:
        wait_until(
            lambda: {status_of(outbox, d)["status"] for d in (by_name, mapped)} == {"parked"},
            10,
            "both deliveries to be refused",
        )
    finally:
        stop.set()

    assert receiver.received == []
    assert status_of(outbox, by_name)["last_error"].startswith("refused:")
    assert status_of(outbox, by_name)["attempts"] == 1


def test_a_redirect_is_not_followed(outbox: WebhookOutbox) -> None:
    elsewhere = Receiver()
    redirecting = Receiver("redirect", redirect_to=elsewhere.url())
    delivery = enqueue(outbox, redirecting.url(), 1)

    stop = sending(outbox, LOOPBACK, timeout=1.0, threads=2, max_attempts=2, base_delay=0.1)
    try:
        wait_until(lambda: status_of(outbox, delivery)["status"] == "parked", 10, "parking")
    finally:
        stop.set()

    assert len(redirecting.received) == 2
    assert elsewhere.received == []
    assert status_of(outbox, delivery)["last_error"] == "HTTP 307"
