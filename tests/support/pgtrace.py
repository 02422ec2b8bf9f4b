"""What a datastore's connections say to PostgreSQL, message by message (libpq's trace)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from psycopg import pq


class Trace:
    """The protocol messages of the connections a datastore handed out while traced."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def text(self) -> str:
        return self.path.read_text() if self.path.exists() else ""

    @property
    def round_trips(self) -> int:
        """Exchanges the server ended ready for the next query: one per round trip."""
        return self.text.count("ReadyForQuery")


@contextmanager
def traced(datastore: Any, path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Trace]:
    """Trace every connection ``datastore.get_connection()`` hands out in the block."""
    get_connection = datastore.get_connection

    @contextmanager
    def tracing() -> Iterator[Any]:
        with get_connection() as conn, path.open("a") as out:
            conn.pgconn.trace(out.fileno())
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
            try:
                yield conn
            finally:
                conn.pgconn.untrace()

    with monkeypatch.context() as patched:
        patched.setattr(datastore, "get_connection", tracing)
        yield Trace(path)
