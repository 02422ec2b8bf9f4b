"""What a log line is about: the command (and its correlation and causation) that the
code running now works on.

The parts bind it where they take a command up (the web's accept, the relay's publish,
the worker's run, the saga runner's decision, the projector's apply) and every line
logged inside carries it: :mod:`infrastructure.logs` adds :func:`fields` to each record.
A :class:`~contextvars.ContextVar`, so that threads (and a gthread web worker's
requests) each have their own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

_NONE: Mapping[str, str | None] = MappingProxyType({})
_FIELDS: ContextVar[Mapping[str, str | None]] = ContextVar("boxoffice_log_fields", default=_NONE)


def fields() -> Mapping[str, str | None]:
    """The fields bound now (empty outside any command)."""
    return _FIELDS.get()


@contextmanager
def bound(**values: object) -> Iterator[None]:
    """Bind ``values`` (as text; None stays None: a command with no cause says so) for
    the lines logged inside."""
    added = {key: None if value is None else str(value) for key, value in values.items()}
    token = _FIELDS.set(MappingProxyType({**_FIELDS.get(), **added}))
    try:
        yield
    finally:
        _FIELDS.reset(token)


def of_command(command: Any) -> dict[str, object]:
    """The fields that tie a line to ``command`` (a
    :class:`~application.command.Command`, or its ``CommandAccepted`` event)."""
    return {
        "command_id": getattr(command, "id", None) or getattr(command, "originator_id", None),
        "command_type": command.command_type,
        "correlation_id": command.correlation_id,
        "causation_id": command.causation_id,
    }
