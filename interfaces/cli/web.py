"""``boxoffice web``: the Flask app under gunicorn."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from flask import Flask
from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from infrastructure import heap, logs, tracing
from infrastructure.settings import Settings
from interfaces.bootstrap import bootstrap
from interfaces.http import create_app

logger = logging.getLogger("boxoffice")


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
            # Each worker listens on a socket of its own (SO_REUSEPORT) and the kernel
            # spreads new connections over them; on one shared socket, whichever worker
            # woke first took them, and long-lived keep-alive connections could all
            # end up in one process, leaving the other idle.
            "reuse_port": True,
            # The longest request line gunicorn takes (its default is 4094): a long
            # query string then reaches the app, which answers a problem+json 400 for
            # what is wrong with it, instead of gunicorn's HTML 414.
            "limit_request_line": 8190,
            "timeout": int(self.settings.max_wait_seconds) + 30,
            "graceful_timeout": 10,
            "accesslog": "-",
            "loglevel": logs.root_level(self.settings).lower(),
            "logger_class": GunicornLogs,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Callable[..., Iterable[bytes]]:
        # Each request thread may hold a connection, the command watcher keeps one for
        # LISTEN and uses another for its reads, and the view progress listener keeps one.
        pool = replace(
            self.settings,
            db_max_overflow=max(self.settings.db_max_overflow, self.settings.web_threads + 3),
        )
        app = create_app(bootstrap(pool))
        tracing.instrument_flask(app)
        served = closing_when_asked(app)
        heap.settled()
        return served


class GunicornLogs(glogging.Logger):  # type: ignore[misc]
    """Gunicorn's error and access lines through the root logger's one handler
    (:mod:`infrastructure.logs`), rendered as every other line is."""

    def setup(self, cfg: Any) -> None:
        """Gunicorn's own set-up, then its handlers dropped for the root's."""
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True


def closing_when_asked(app: Flask) -> Callable[..., Iterable[bytes]]:
    """The app, with its ``Connection: close`` honoured.

    Gunicorn drops hop-by-hop headers an app sets and answers ``keep-alive``; an answer
    that did not read the whole request body (a ``413``) must close the connection
    instead, which gunicorn's response object can be told through ``force_close``.
    """

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            if any(k.lower() == "connection" and v.lower() == "close" for k, v in headers):
                force_close = getattr(
                    getattr(start_response, "__self__", None), "force_close", None
                )
                if force_close is not None:
                    force_close()
            return start_response(status, headers, *exc_info)

        return app(environ, start)

    return wsgi


def run_web(settings: Settings) -> None:
    """Serve HTTP until stopped."""
    if not settings.api_keys:
        logger.warning(
            "authentication is off (no API_KEYS): anyone who reaches %s may submit commands; "
            "only a loopback address is allowed without keys",
            settings.web_host,
        )
    WebServer(settings).run()
