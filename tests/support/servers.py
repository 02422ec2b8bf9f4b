"""Restarting the servers that ``scripts/test-services.sh`` runs, for fault tests.

The script exports where they live (``TEST_SERVICES_STATE``, the binaries' folders and
the ``RABBITMQ_*`` variables). :func:`available` says whether this process can restart
them: not when the tests use servers someone else runs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg


def available() -> bool:
    """Whether the servers were started by ``scripts/test-services.sh`` for this run."""
    return all(os.environ.get(v) for v in ("TEST_SERVICES_STATE", "TEST_PG_BIN", "TEST_RABBIT_BIN"))


def _state() -> Path:
    return Path(os.environ["TEST_SERVICES_STATE"])


def _pg_ctl(*args: str) -> None:
    pg_ctl = str(Path(os.environ["TEST_PG_BIN"]) / "pg_ctl")
    subprocess.run(
        ["runuser", "-u", "postgres", "--", pg_ctl, "-D", str(_state() / "pg"), *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )


def stop_postgres() -> None:
    """Stop PostgreSQL at once, as a crash would (``immediate``: no checkpoint)."""
    _pg_ctl("-m", "immediate", "-w", "stop")


def start_postgres() -> None:
    """Start PostgreSQL again with the options it had (``restart`` reads them back)."""
    _pg_ctl("-w", "-t", "60", "-l", str(_state() / "pg" / "server.log"), "restart")


def _rabbitmqctl(*args: str) -> None:
    ctl = str(Path(os.environ["TEST_RABBIT_BIN"]) / "rabbitmqctl")
    subprocess.run(
        [ctl, "-q", *args],
        env={**os.environ, "HOME": str(_state() / "rabbit")},
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )


def stop_rabbitmq() -> None:
    """Stop the RabbitMQ application: every connection closes and none is accepted."""
    _rabbitmqctl("stop_app")


def start_rabbitmq() -> None:
    """Start the RabbitMQ application again (durable queues and messages come back)."""
    _rabbitmqctl("start_app")


def backends(database_url: str, condition: str) -> int:
    """How many connections to the database at ``database_url`` meet ``condition`` (SQL
    over ``pg_stat_activity``'s columns)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "  # noqa: S608 - the tests' own SQL
            f"WHERE datname = current_database() AND {condition}"
        ).fetchone()
    return int(row[0]) if row else 0
