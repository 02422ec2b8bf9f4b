"""Settings: the embedded default, and every bad value reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrastructure.event_store import event_store_env
from infrastructure.settings import ApiKey, DatabaseUrl, Settings, SettingsError


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
            "API_KEYS": f"alice commands:write,commands:read sha256:{ApiKey.digest_of('k1')};"
            f"viewer commands:read sha256:{ApiKey.digest_of('k2')}",
            "COMMAND_MODULES": "tests.support.commands",
        }
    )

    assert settings.database == DatabaseUrl("box", "db.example", 6543, "u", "p@ss")
    assert settings.broker == "amqp://guest:guest@mq:5672//"
    assert settings.max_attempts == 5
    assert settings.api_keys == (
        ApiKey("alice", frozenset({"commands:write", "commands:read"}), ApiKey.digest_of("k1")),
        ApiKey("viewer", frozenset({"commands:read"}), ApiKey.digest_of("k2")),
    )
    assert settings.command_modules == ("tests.support.commands",)


def test_every_bad_value_is_reported_together() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(
            {
                "DATABASE_URL": "mysql://x",
                "WEB_PORT": "99999",
                "COMMAND_MAX_ATTEMPTS": "zero",
                "API_KEYS": "alice t1",
            }
        )

    problems = raised.value.problems
    assert [p.split("=")[0] for p in problems] == [
        "DATABASE_URL",
        "COMMAND_MAX_ATTEMPTS",
        "WEB_PORT",
        "API_KEYS",
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


def test_api_keys_come_hashed_from_the_environment_or_a_file(tmp_path: Path) -> None:
    listed = tmp_path / "keys"
    listed.write_text(f"# partners\nbob admin sha256:{ApiKey.digest_of('k3')}\n\n")

    settings = Settings.from_env(
        {
            "API_KEYS": f"alice commands:read sha256:{ApiKey.digest_of('k1')}",
            "API_KEYS_FILE": str(listed),
        }
    )

    assert [(k.client, k.scopes) for k in settings.api_keys] == [
        ("alice", frozenset({"commands:read"})),
        ("bob", frozenset({"admin"})),
    ]
    assert "k1" not in repr(settings)


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        (f"alice commands:delete sha256:{'a' * 64}", "unknown scope"),
        (f"saga admin sha256:{'a' * 64}", "uses itself"),
        ("alice admin plaintext-key", "is not"),
        (f"alice admin sha256:{'a' * 64};bob admin sha256:{'a' * 64}", "twice"),
    ],
)
def test_a_bad_api_key_entry_is_refused(entry: str, complaint: str) -> None:
    with pytest.raises(SettingsError, match=complaint):
        Settings.from_env({"API_KEYS": entry})


def test_without_api_keys_only_loopback_may_be_served() -> None:
    key = f"alice admin sha256:{ApiKey.digest_of('k')}"
    everywhere = "0.0.0.0"  # noqa: S104 - what the test refuses

    assert Settings.from_env({"WEB_HOST": "127.0.0.1"}).web_host == "127.0.0.1"
    assert Settings.from_env({"WEB_HOST": everywhere, "API_KEYS": key}).web_host == everywhere
    with pytest.raises(SettingsError, match=r"WEB_HOST=0\.0\.0\.0: without API_KEYS"):
        Settings.from_env({"WEB_HOST": everywhere})


def test_segments_are_a_whole_number_from_one_to_sixteen() -> None:
    settings = Settings.from_env({"VIEW_SEGMENTS": "4", "SAGA_SEGMENTS": "2"})
    assert (settings.view_segments, settings.saga_segments) == (4, 2)

    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"VIEW_SEGMENTS": "0", "SAGA_SEGMENTS": "17"})

    assert raised.value.problems == [
        "VIEW_SEGMENTS='0': must be a whole number from 1 to 16",
        "SAGA_SEGMENTS='17': must be a whole number from 1 to 16",
    ]


def test_the_snapshot_interval_is_a_whole_number_zero_for_none() -> None:
    assert Settings.from_env({}).snapshot_interval == 50
    assert Settings.from_env({"SNAPSHOT_INTERVAL": "0"}).snapshot_interval == 0
    chosen = Settings(database_url="postgresql://u@db/box", snapshot_interval=20)
    assert event_store_env(chosen)["SNAPSHOT_INTERVAL"] == "20"

    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"SNAPSHOT_INTERVAL": "-1"})

    assert raised.value.problems == ["SNAPSHOT_INTERVAL='-1': must be a whole number of at least 0"]
