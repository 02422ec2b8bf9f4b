"""Settings: the embedded default, and every bad value reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrastructure.settings import DatabaseUrl, Settings, SettingsError


def test_no_variable_means_the_embedded_default() -> None:
    settings = Settings.from_env({})

    assert settings.embedded_database
    assert settings.broker == "filesystem://"
    assert settings.var_dir == Path("var")
    assert settings.max_attempts == 3


def test_variables_override_the_defaults() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u:p%40ss@db.example:6543/box",
            "BROKER_URL": "amqp://guest:guest@mq:5672//",
            "COMMAND_MAX_ATTEMPTS": "5",
            "API_TOKENS": "alice:t1,viewer:t2:read",
            "COMMAND_MODULES": "tests.support.commands",
        }
    )

    assert settings.database == DatabaseUrl("box", "db.example", 6543, "u", "p@ss")
    assert settings.broker == "amqp://guest:guest@mq:5672//"
    assert settings.max_attempts == 5
    assert settings.api_tokens == {"t1": "alice", "t2": "viewer"}
    assert settings.read_only_clients == frozenset({"viewer"})
    assert settings.command_modules == ("tests.support.commands",)


def test_every_bad_value_is_reported_together() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(
            {
                "DATABASE_URL": "mysql://x",
                "WEB_PORT": "99999",
                "COMMAND_MAX_ATTEMPTS": "zero",
                "API_TOKENS": "no-colon",
            }
        )

    problems = raised.value.problems
    assert [p.split("=")[0] for p in problems] == [
        "DATABASE_URL",
        "COMMAND_MAX_ATTEMPTS",
        "WEB_PORT",
        "API_TOKENS",
    ]
    assert "postgresql://" in problems[0]


def test_a_socket_directory_url_round_trips() -> None:
    url = "postgresql://postgres:@/postgres?host=/tmp/sock&port=5433"

    parsed = DatabaseUrl.parse(url)

    assert parsed.host == "/tmp/sock"
    assert parsed.port == 5433
    assert DatabaseUrl.parse(parsed.url()) == parsed


def test_a_payment_gateway_is_fake_or_a_factory_path() -> None:
    assert Settings.from_env({}).payment_gateway == "fake"
    named = Settings.from_env({"PAYMENT_GATEWAY": "acme.gateway:build"})
    assert named.payment_gateway == "acme.gateway:build"
    with pytest.raises(SettingsError, match="PAYMENT_GATEWAY"):
        Settings.from_env({"PAYMENT_GATEWAY": "stripe"})
