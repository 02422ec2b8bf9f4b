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

from infrastructure.embedded import EmbeddedPostgres
from infrastructure.event_store import migrate
from infrastructure.settings import Settings

PARTS = ("web", "worker", "relay", "projector", "sagas")


def serve(settings: Settings) -> int:
    """Run every part until Ctrl-C or until one of them dies."""
    env = dict(os.environ)
    embedded: EmbeddedPostgres | None = None
    if settings.embedded_database:
        embedded = EmbeddedPostgres(settings.var_dir)
        url = embedded.start()
        env["DATABASE_URL"] = url
        settings = settings.with_database(url)
    if not settings.webhook_secret:
        env["WEBHOOK_SECRET"] = _webhook_secret(settings.var_dir)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        migrate(settings)
        for part in PARTS:
            children[part] = subprocess.Popen(
                [sys.executable, "-m", "interfaces.cli.main", part], env=env
            )
        _announce(settings, embedded is not None)
        return _supervise(children, stop)
    finally:
        _stop_all(children)
        if embedded is not None:
            embedded.stop()


def _webhook_secret(var_dir: Path) -> str:
    """The embedded default's webhook secret, made once and kept in ``var/``."""
    path = var_dir / "webhook_secret"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _supervise(children: dict[str, subprocess.Popen[bytes]], stop: threading.Event) -> int:
    while not stop.wait(0.5):
        for part, child in children.items():
            if child.poll() is not None:
                print(f"boxoffice: {part} exited with {child.returncode}; stopping", flush=True)
                return 1
    return 0


def _stop_all(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children.values():
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
        "Ctrl-C stops everything.\n",
        flush=True,
    )
