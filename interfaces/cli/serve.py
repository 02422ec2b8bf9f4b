"""``boxoffice serve``: every part of the service as child processes of one command."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from application.retry import Backoff
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.settings import Settings
from interfaces.bootstrap import migrate

PARTS = ("web", "worker", "relay", "projector", "saga-runner")
# A part that dies is restarted after RESTART_PAUSE s, doubling while it keeps dying.
RESTART_PAUSE = 1.0
MAX_RESTART_PAUSE = 30.0


def serve(settings: Settings) -> int:
    """Run every part until Ctrl-C or SIGTERM (exit status 0); a part that dies is restarted."""
    # The parts count into serve's metrics directory (PROMETHEUS_MULTIPROC_DIR, in the
    # environment already): the web's /metrics shows them all, and no part binds a
    # metrics port of its own.
    env = dict(os.environ)
    env.pop("METRICS_PORT", None)
    embedded: EmbeddedPostgres | None = None
    if settings.embedded_database:
        embedded = EmbeddedPostgres(settings.var_dir)
        url = embedded.start()
        env["DATABASE_URL"] = url
        settings = settings.with_database(url)
        settings.served_database_file.write_text(url)
    if not settings.webhook_secret:
        env["WEBHOOK_SECRET"] = _webhook_secret(settings.var_dir)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    parts = [Part(name, env) for name in PARTS]
    try:
        migrate(settings)
        for part in parts:
            part.start()
        _announce(settings, embedded is not None)
        _supervise(parts, stop)
        return 0
    finally:
        _stop_all([part.process for part in parts if part.process is not None])
        if embedded is not None:
            settings.served_database_file.unlink(missing_ok=True)
            embedded.stop()


def _webhook_secret(var_dir: Path) -> str:
    """The embedded default's webhook secret, made once and kept in ``var/``."""
    path = var_dir / "webhook_secret"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


class Part:
    """One part of the service as a child process, restarted with backoff when it dies."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restart_at: float | None = None
        self.backoff = Backoff(RESTART_PAUSE, MAX_RESTART_PAUSE)

    def start(self) -> None:
        """Start the part's process and say so."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "interfaces.cli.main", self.name], env=self.env
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        print(f"boxoffice: {self.name} started (pid {self.process.pid})", flush=True)

    def check(self, now: float) -> None:
        """Schedule a restart of a part that exited, and restart it when due."""
        if self.process is None:
            return
        if self.restart_at is None and self.process.poll() is not None:
            pause = self.backoff.after_failure(now - self.started_at)
            self.restart_at = now + pause
            print(
                f"boxoffice: {self.name} exited with {self.process.returncode}; "
                f"restarting it in {pause:g} s",
                flush=True,
            )
        elif self.restart_at is not None and now >= self.restart_at:
            self.start()


def _supervise(parts: list[Part], stop: threading.Event) -> None:
    while not stop.wait(0.5):
        now = time.monotonic()
        for part in parts:
            part.check(now)


def _stop_all(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _announce(settings: Settings, embedded: bool) -> None:
    url = f"http://{settings.web_host}:{settings.web_port}"
    where = "embedded PostgreSQL in " + str(settings.var_dir) if embedded else "DATABASE_URL"
    print(
        f"\nboxoffice is starting at {url} (event store: {where}, broker: "
        f"{settings.broker.split('://')[0]})\n"
        f"  curl {url}/health\n"
        f"  curl -i -X PUT {url}/shows/s1 -H 'Content-Type: application/json' "
        f"-H 'Idempotency-Key: s1' -H 'Prefer: wait=5' "
        '-d \'{"title": "Hamlet", "starts_at": "2027-01-01T20:00:00Z", '
        '"seats": ["A1", "A2"], "price_cents": 4500}\'\n'
        "In another terminal, the operator's commands: .venv/bin/boxoffice --help\n"
        "Ctrl-C stops everything.\n",
        flush=True,
    )
