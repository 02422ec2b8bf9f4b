"""``boxoffice web``: the Flask app under gunicorn."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from infrastructure.settings import Settings
from interfaces.bootstrap import bootstrap
from interfaces.http import create_app


class WebServer(BaseApplication):  # type: ignore[misc]
    """Gunicorn configured from settings; each worker process builds its own app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        options: dict[str, Any] = {
            "bind": f"{self.settings.web_host}:{self.settings.web_port}",
            "workers": self.settings.web_workers,
            # Threads let one process hold Prefer: wait requests and still serve others.
            "worker_class": "gthread",
            "threads": self.settings.web_threads,
            "timeout": int(self.settings.max_wait_seconds) + 30,
            "graceful_timeout": 10,
            "accesslog": "-",
            "loglevel": self.settings.log_level.lower(),
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        # Each request thread may hold a connection, and the command watcher keeps one
        # for LISTEN and uses another for its reads.
        pool = replace(
            self.settings,
            db_max_overflow=max(self.settings.db_max_overflow, self.settings.web_threads + 2),
        )
        return create_app(bootstrap(pool))


def run_web(settings: Settings) -> None:
    """Serve HTTP until stopped."""
    WebServer(settings).run()
