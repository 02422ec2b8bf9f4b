"""The sender: threads that claim due deliveries and POST them, bounded per receiver."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from infrastructure.webhooks.addresses import (
    AddressPolicy,
    RefusedAddressError,
    destination_of,
    post,
)
from infrastructure.webhooks.outbox import Delivery, WebhookOutbox
from infrastructure.webhooks.signature import sign

logger = logging.getLogger(__name__)

# Deliveries to one destination (scheme, host, port) in flight at once.
PER_DESTINATION = 2
MAX_DELAY_SECONDS = 300.0


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
        counted: Callable[[str], None] = lambda outcome: None,
    ) -> None:
        # Called with each attempt's outcome: delivered, failed, parked or refused.
        self.counted = counted
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
            self.counted("refused")
            return
        except OSError as error:
            outcome = repr(error)
        else:
            if 200 <= status < 300:
                self.outbox.delivered(delivery.delivery_id)
                self.counted("delivered")
                return
            outcome = f"HTTP {status}"
        attempt = delivery.attempts + 1
        if attempt >= self.max_attempts:
            logger.error(
                "webhook %s parked after %d attempts: %s", delivery.delivery_id, attempt, outcome
            )
            self.outbox.failed(delivery.delivery_id, outcome, None)
            self.counted("parked")
        else:
            logger.warning("webhook %s attempt %d: %s", delivery.delivery_id, attempt, outcome)
            delay = min(MAX_DELAY_SECONDS, self.base_delay * 2 ** (attempt - 1))
            self.outbox.failed(delivery.delivery_id, outcome, delay)
            self.counted("failed")
