"""Signed webhooks: a command's terminal status, POSTed to its ``Callback-Url``.

Two steps, so that no receiver can hold up another:
1. :class:`WebhookDispatcher` follows terminal command events and writes each delivery
   to the ``webhook_deliveries`` outbox together with its tracked position (one
   transaction): it never waits for a receiver.
2. :class:`WebhookSender` threads claim due deliveries (``FOR UPDATE SKIP LOCKED``, a
   lease on each) and POST them, at most two at a time per destination, each with a
   time-out. A 2xx ends a delivery; anything else is retried with backoff, and after
   the last attempt the delivery is *parked*: kept, listed by ``GET /webhooks``, and no
   longer tried. A sender that dies mid-delivery leaves it to be claimed again after
   its lease, with the same ``Boxoffice-Delivery`` id, so receivers can drop a repeat.

Receivers are never on this side of the network: every address a URL's host resolves
to must be a global one (no loopback, private, link-local or metadata address) unless
its network is allow-listed (``WEBHOOK_ALLOW_NETWORKS``); the connection goes to the
address that was checked, and redirects are not followed.

Signature: ``Boxoffice-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">``
keyed with ``WEBHOOK_SECRET``; receivers should reject old ``t`` values.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from eventsourcing.application import Repository
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.utils import get_topic
from psycopg.sql import SQL

from application.command import Command
from projections.command_registry import present_command

logger = logging.getLogger(__name__)

TERMINAL_EVENTS = (Command.CommandSucceeded, Command.CommandFailed, Command.CommandDeadLettered)
# Deliveries to one destination (scheme, host, port) in flight at once.
PER_DESTINATION = 2
MAX_DELAY_SECONDS = 300.0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Boxoffice-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes, tolerance: float = 300) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and is at most ``tolerance`` s old."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    fresh = abs(time.time() - timestamp) <= tolerance
    return fresh and hmac.compare_digest(expected, fields.get("v1", ""))


class RefusedAddressError(Exception):
    """Raised when a callback URL's host is, or resolves to, an address not allowed."""


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses webhooks may reach: global ones, and the allow-listed networks."""

    allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def allowing(cls, networks: Sequence[str]) -> AddressPolicy:
        """A policy that also allows ``networks`` (CIDRs)."""
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def permits(self, address: str) -> bool:
        """Whether ``address`` (an IP) may be reached."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_global or any(ip in network for network in self.allowed)

    def check_host(self, host: str) -> None:
        """Refuse a host that is visibly local: ``localhost`` or a literal address not
        permitted. Other names are checked when they are resolved, at delivery."""
        if host.lower().rstrip(".") == "localhost" or host.lower().endswith(".localhost"):
            if not self.permits("127.0.0.1"):
                raise RefusedAddressError(f"{host} is this machine")
            return
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return
        if not self.permits(host):
            raise RefusedAddressError(f"{host} is not a public address")

    def resolve(self, host: str, port: int) -> str:
        """The address to connect to for ``host``; every address it resolves to must be
        permitted, so that a name cannot mix a public address with an inside one."""
        self.check_host(host)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise OSError(f"cannot resolve {host}: {error}") from error
        addresses = [str(info[4][0]) for info in infos]
        refused = [a for a in addresses if not self.permits(a)]
        if refused:
            raise RefusedAddressError(f"{host} resolves to {refused[0]}, not a public address")
        return addresses[0]


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to ``address``, whatever its host name resolves to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """An HTTPS connection to ``address``, verifying the certificate of ``host``."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address
        self.tls = ssl.create_default_context()

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)


def post(
    url: str, body: bytes, headers: dict[str, str], policy: AddressPolicy, timeout: float
) -> int:
    """POST ``body`` to ``url`` once; returns the status (a redirect is just a status).

    Raises :class:`RefusedAddressError` for an address not permitted, ``OSError`` when
    the receiver cannot be reached or does not answer within ``timeout`` s.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = policy.resolve(host, port)
    connection_class = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    connection = connection_class(host, port, address, timeout)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        response.read(65536)  # what a receiver says is not kept
        return int(response.status)
    except http.client.HTTPException as error:
        raise OSError(f"bad answer: {error!r}") from error
    finally:
        connection.close()


def destination_of(url: str) -> str:
    """The receiver a URL reaches (scheme, host, port): deliveries are bounded by it."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}"


@dataclass(frozen=True)
class Delivery:
    """One command outcome to POST to one URL."""

    delivery_id: str
    url: str
    body: bytes
    attempts: int


class WebhookOutbox(PostgresTrackingRecorder):
    """The deliveries to make, and the dispatcher's position (``webhooks_tracking``)."""

    CREATE = (
        "CREATE TABLE IF NOT EXISTS webhook_deliveries ("
        "delivery_id text PRIMARY KEY, url text NOT NULL, destination text NOT NULL, "
        "body bytea NOT NULL, status text NOT NULL DEFAULT 'pending', "
        "attempts int NOT NULL DEFAULT 0, last_error text, "
        "next_at timestamptz NOT NULL DEFAULT now(), "
        "created_at timestamptz NOT NULL DEFAULT now(), "
        "updated_at timestamptz NOT NULL DEFAULT now())"
    )
    INDEX = (
        "CREATE INDEX IF NOT EXISTS webhook_deliveries_due "
        "ON webhook_deliveries (next_at) WHERE status = 'pending'"
    )

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.sql_create_statements += [SQL(self.CREATE).format(), SQL(self.INDEX).format()]

    def enqueue(self, delivery: Delivery, tracking: Tracking) -> None:
        """Record a delivery to make and the dispatcher's new position, together."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "INSERT INTO webhook_deliveries (delivery_id, url, destination, body) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (delivery_id) DO NOTHING",
                (delivery.delivery_id, delivery.url, destination_of(delivery.url), delivery.body),
            )
            self._insert_tracking(curs, tracking)

    def claim(self, busy: Sequence[str], lease_seconds: float) -> Delivery | None:
        """A due delivery to a destination not in ``busy``, leased to the caller."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "UPDATE webhook_deliveries SET next_at = now() + make_interval(secs => %s) "
                "WHERE delivery_id = (SELECT delivery_id FROM webhook_deliveries "
                "WHERE status = 'pending' AND next_at <= now() AND destination <> ALL(%s) "
                "ORDER BY next_at LIMIT 1 FOR UPDATE SKIP LOCKED) "
                "RETURNING delivery_id, url, body, attempts",
                (lease_seconds, list(busy)),
            )
            row = curs.fetchone()
        if row is None:
            return None
        return Delivery(row["delivery_id"], row["url"], bytes(row["body"]), row["attempts"])

    def delivered(self, delivery_id: str) -> None:
        """The receiver took it."""
        self._finish(delivery_id, "delivered", None, 0.0)

    def failed(self, delivery_id: str, error: str, retry_in: float | None) -> None:
        """An attempt failed: try again in ``retry_in`` s, or park it (None)."""
        self._finish(delivery_id, "pending" if retry_in is not None else "parked", error, retry_in)

    def _finish(
        self, delivery_id: str, status: str, error: str | None, delay: float | None
    ) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "UPDATE webhook_deliveries SET status = %s, attempts = attempts + 1, "
                "last_error = %s, next_at = now() + make_interval(secs => %s), "
                "updated_at = now() WHERE delivery_id = %s",
                (status, error, delay or 0.0, delivery_id),
            )

    def listed(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        """Deliveries (of ``status``), most recently changed first."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT delivery_id, url, status, attempts, last_error, next_at, created_at, "
                "updated_at FROM webhook_deliveries WHERE %s::text IS NULL OR status = %s "
                "ORDER BY updated_at DESC LIMIT %s",
                (status, status, limit),
            )
            rows = curs.fetchall()
        return [
            {
                **row,
                "next_at": row["next_at"].isoformat(),
                "created_at": row["created_at"].isoformat(),
                "updated_at": row["updated_at"].isoformat(),
            }
            for row in rows
        ]


class WebhookDispatcher:
    """Puts terminal command statuses in the outbox; runs in the projector."""

    name = "webhooks"

    def __init__(self, view: WebhookOutbox, repository: Repository[Any]) -> None:
        self.view = view
        self.repository = repository

    @staticmethod
    def event_topics() -> tuple[str, ...]:
        """The terminal command events."""
        return tuple(get_topic(cls) for cls in TERMINAL_EVENTS)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Record the command's delivery if it asked for a callback, and the position."""
        command: Command = self.repository.get(
            domain_event.originator_id, version=domain_event.originator_version
        )
        if command.callback_url:
            body = json.dumps(present_command(command)).encode()
            delivery = Delivery(f"{command.id}.{command.version}", command.callback_url, body, 0)
            self.view.enqueue(delivery, tracking)
        else:
            self.view.insert_tracking(tracking)


class WebhookSender:
    """Threads that POST due deliveries until stopped."""

    def __init__(
        self,
        outbox: WebhookOutbox,
        secret: str,
        policy: AddressPolicy,
        *,
        max_attempts: int = 8,
        timeout: float = 5.0,
        threads: int = 8,
        base_delay: float = 0.5,
        idle_seconds: float = 0.2,
    ) -> None:
        self.outbox = outbox
        self.secret = secret
        self.policy = policy
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.threads = threads
        self.base_delay = base_delay
        self.idle_seconds = idle_seconds
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set."""
        workers = [
            threading.Thread(target=self._work, args=(stop,), name=f"webhook-sender-{n}")
            for n in range(self.threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def _work(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if not self.send_next():
                    stop.wait(self.idle_seconds)
            except Exception as error:  # noqa: BLE001 - the store went away: pause, go on
                logger.warning("webhook sender: %s; trying again in 1 s", error)
                stop.wait(1.0)

    def send_next(self) -> bool:
        """Claim and send one due delivery; returns whether there was one."""
        with self._lock:
            busy = [d for d, n in self._in_flight.items() if n >= PER_DESTINATION]
        # The lease outlasts an attempt, so no one else claims a delivery being sent.
        delivery = self.outbox.claim(busy, lease_seconds=self.timeout * 3 + 5)
        if delivery is None:
            return False
        destination = destination_of(delivery.url)
        with self._lock:
            self._in_flight[destination] += 1
        try:
            self._send(delivery)
        finally:
            with self._lock:
                self._in_flight[destination] -= 1
        return True

    def _send(self, delivery: Delivery) -> None:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "boxoffice-webhooks",
            "Boxoffice-Delivery": delivery.delivery_id,
            "Boxoffice-Signature": sign(self.secret, timestamp, delivery.body),
        }
        try:
            status = post(delivery.url, delivery.body, headers, self.policy, self.timeout)
        except RefusedAddressError as error:
            logger.error("webhook %s refused: %s", delivery.delivery_id, error)
            self.outbox.failed(delivery.delivery_id, f"refused: {error}", None)
            return
        except OSError as error:
            outcome = repr(error)
        else:
            if 200 <= status < 300:
                self.outbox.delivered(delivery.delivery_id)
                return
            outcome = f"HTTP {status}"
        attempt = delivery.attempts + 1
        if attempt >= self.max_attempts:
            logger.error(
                "webhook %s parked after %d attempts: %s", delivery.delivery_id, attempt, outcome
            )
            self.outbox.failed(delivery.delivery_id, outcome, None)
        else:
            logger.warning("webhook %s attempt %d: %s", delivery.delivery_id, attempt, outcome)
            delay = min(MAX_DELAY_SECONDS, self.base_delay * 2 ** (attempt - 1))
            self.outbox.failed(delivery.delivery_id, outcome, delay)
