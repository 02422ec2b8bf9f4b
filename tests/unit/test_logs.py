"""Log lines: JSON or readable, about the command bound, and never with a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from application import log_context
from infrastructure import logs
from infrastructure.settings import Settings, SettingsError

SECRET = "webhook-secret-0123456789"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def logged(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def configured(stream: io.StringIO, **settings: Any) -> logging.Logger:
    base = Settings(
        webhook_secret=SECRET,
        database_url="postgresql://app:pg-pass-42@db/boxoffice",
        broker_url="amqp://app:mq-pass-43@mq//",
    )
    logs.configure(Settings(**{**base.__dict__, **settings}), "worker", stream)
    return logging.getLogger("application.pipeline")


def test_a_json_line_carries_the_command_bound_and_the_call_s_extra() -> None:
    out = io.StringIO()
    log = configured(out, log_format="json")

    with log_context.bound(command_id="c1", correlation_id="s1", causation_id=None):
        log.info("attempt %d: %s", 2, "succeeded", extra={"queue": "boxoffice.commands"})
    log.info("outside")

    inside, outside = logged(out)
    assert inside["message"] == "attempt 2: succeeded"
    assert (inside["command_id"], inside["correlation_id"], inside["causation_id"]) == (
        "c1",
        "s1",
        None,
    )
    assert inside["component"] == "worker"
    assert inside["level"] == "info"
    assert inside["logger"] == "application.pipeline"
    assert inside["queue"] == "boxoffice.commands"
    assert inside["timestamp"].endswith("Z")
    assert "command_id" not in outside


def test_secrets_are_replaced_in_messages_and_tracebacks() -> None:
    out = io.StringIO()
    log = configured(out, log_format="json")

    log.warning("signed with %s; db pg-pass-42, broker mq-pass-43", SECRET)
    try:
        raise ValueError("input_value={'card_token': 'tok_approve', 'seats': ['A1']}")
    except ValueError:
        log.exception("Authorization: Bearer abc.def-123 password=hunter2 api_key: k-1")

    text = out.getvalue()
    for secret in (SECRET, "pg-pass-42", "mq-pass-43", "tok_approve", "abc.def-123", "hunter2"):
        assert secret not in text
    assert "k-1" not in text
    first, second = logged(out)
    assert first["message"] == "signed with [redacted]; db [redacted], broker [redacted]"
    assert "'card_token': '[redacted]', 'seats': ['A1']" in second["exception"]


def test_a_key_named_for_a_secret_is_redacted_whatever_its_value() -> None:
    out = io.StringIO()
    log = configured(out, log_format="json")

    log.info("delivery", extra={"signature": "sha256=abc", "authorization": "Basic x"})

    (line,) = logged(out)
    assert line["authorization"] == logs.REDACTED
    assert "sha256=abc" not in out.getvalue()


def test_auto_is_readable_on_a_terminal_and_json_elsewhere() -> None:
    terminal, pipe = Terminal(), io.StringIO()

    configured(terminal).info("on a terminal")
    configured(pipe).info("in a pipe")

    assert not terminal.getvalue().startswith("{")
    assert "on a terminal" in terminal.getvalue()
    assert json.loads(pipe.getvalue())["message"] == "in a pipe"


def test_debug_opens_our_loggers_and_leaves_the_libraries_at_info() -> None:
    out = io.StringIO()
    ours = configured(out, log_format="json", log_level="DEBUG")

    ours.debug("ours")
    logging.getLogger("kombu.connection").debug("theirs")
    logging.getLogger("celery.app.trace").info("Task succeeded in 0.01s")

    assert [line["message"] for line in logged(out)] == ["ours"]


def test_log_format_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_FORMAT", "xml")

    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        Settings.from_env()


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("AUTHORIZATION: BEARER abc.def", "AUTHORIZATION: [redacted]"),
        ("{'Card_Token': 'tok_visa'}", "{'Card_Token': '[redacted]'}"),
        ("sent with bearer xyz-1", "sent with bearer [redacted]"),
        ("Signature=3f2a, then", "Signature=[redacted], then"),
        ("accepted CreateShow for /shows/s1", "accepted CreateShow for /shows/s1"),
    ],
)
def test_a_secret_is_found_whatever_the_case_of_its_name(text: str, kept: str) -> None:
    """A text without the name of a secret skips the patterns: one with it, in any case,
    does not."""
    assert logs.Redactor().text(text) == kept
