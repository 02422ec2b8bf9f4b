"""Network faults for tests: a loopback TCP proxy that a test can cut and restore.

Processes under test connect to the proxy instead of PostgreSQL or RabbitMQ. ``cut()``
kills the proxy and every connection through it, so the processes see their connections
drop and new ones refused, as when a server goes away; ``restore()`` starts it again on
the same port. Only the processes pointed at the proxy see the outage: the servers the
rest of the suite shares keep running.

The proxy is ``socat``, one process per connection with ``TCP_NODELAY`` on both sides
as PostgreSQL's and AMQP's own clients have, so that it adds next to no latency.
``scripts/test-services.sh`` installs it with the servers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

from tests.e2e.conftest import free_port


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port`` while not cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self.restore()

    @classmethod
    def to(cls, url: str, default_port: int) -> TcpProxy:
        """A proxy to the server of ``url`` (``postgresql://`` or ``amqp://``)."""
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or default_port)

    def route(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's."""
        parts = urlsplit(url)
        auth, _, _ = parts.netloc.rpartition("@")
        host = f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=f"{auth}@{host}" if auth else host))

    def restore(self) -> None:
        """Accept connections again (on the same port)."""
        host, port = self.target
        self._process = subprocess.Popen(
            [
                "socat",
                # nodelay: without it, Nagle's algorithm and delayed ACKs hold each small
                # write of a PostgreSQL or AMQP exchange for up to 40 ms.
                f"TCP-LISTEN:{self.port},bind=127.0.0.1,fork,reuseaddr,nodelay",
                f"TCP:{host}:{port},nodelay",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its forked children share its group: cut kills all
        )
        deadline = time.monotonic() + 10
        while not self._listening():
            if time.monotonic() > deadline:
                raise RuntimeError(f"socat did not listen on {self.port}")
            time.sleep(0.02)

    def _listening(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def cut(self) -> None:
        """Refuse new connections and drop every open one."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
            self._process = None

    def close(self) -> None:
        """Stop the proxy for good."""
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
