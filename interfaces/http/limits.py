"""How much one client may ask of a web process: requests per second, open streams.

Both are counted per process (a token bucket and a counter per client): with N web
processes behind a balancer a client may get up to N times the rate.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import current_app

from interfaces.http.problems import Problem


@dataclass
class Limits:
    """The rate of requests and the event streams each client may have."""

    rate: float
    burst: float
    streams: int
    clock: Callable[[], float] = time.monotonic
    # Called with the limit a refused request hit: ``rate`` or ``streams``.
    refused: Callable[[str], None] = lambda limit: None
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _open: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, client: str) -> None:
        """Take one request from ``client``'s bucket; a 429 :class:`Problem` when empty."""
        now = self.clock()
        with self._lock:
            tokens, since = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - since) * self.rate)
            if tokens < 1:
                self._buckets[client] = (tokens, now)
                wait = math.ceil((1 - tokens) / self.rate)
                self.refused("rate")
                raise _too_many(f"more than {self.rate:g} requests a second", wait)
            self._buckets[client] = (tokens - 1, now)

    def open_stream(self, client: str) -> Callable[[], None]:
        """Count one more event stream of ``client`` (a 429 past the limit); returns what
        to call when it closes (calling it again does nothing)."""
        with self._lock:
            if self._open.get(client, 0) >= self.streams:
                self.refused("streams")
                raise _too_many(f"more than {self.streams} event streams open", 5)
            self._open[client] = self._open.get(client, 0) + 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if not released.is_set():
                    released.set()
                    self._open[client] -= 1

        return release


def _too_many(what: str, retry_after: int) -> Problem:
    return Problem(
        429,
        "Too many requests",
        f"this API key sent {what}",
        kind="too-many-requests",
        headers={"Retry-After": str(max(1, retry_after))},
    )


def limits() -> Limits:
    """The limits of the app serving this request."""
    found: Limits = current_app.extensions["boxoffice-limits"]
    return found
