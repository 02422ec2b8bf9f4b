"""``boxoffice keys new``: a key for the client, and the entry that configures it."""

from __future__ import annotations

import pytest

from infrastructure.settings import ApiKey, Settings
from interfaces.cli.main import main


def test_a_new_key_comes_with_the_entry_that_accepts_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new", "alice", "--scopes", "commands:read,admin"]) == 0

    lines = capsys.readouterr().out.splitlines()
    key = lines[0].rsplit(": ", 1)[1]
    entry = lines[1].removeprefix("API_KEYS entry: ")
    (configured,) = Settings.from_env({"API_KEYS": entry}).api_keys
    assert configured == ApiKey(
        "alice", frozenset({"commands:read", "admin"}), ApiKey.digest_of(key)
    )
    assert key not in entry


def test_a_key_for_an_unknown_scope_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new", "alice", "--scopes", "commands:delete"]) == 2
    assert "unknown scope" in capsys.readouterr().err
