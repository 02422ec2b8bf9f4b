"""The operator's commands answer scripts with exit statuses and plain reasons."""

from __future__ import annotations

import json

import pytest

from interfaces.cli.main import main


def test_an_unreachable_event_store_is_status_1_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing")
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "1")

    assert main(["commands", "show", "6f1c2b9e-0000-4000-8000-000000000000"]) == 1
    assert "the event store cannot be reached" in capsys.readouterr().err


def test_bad_arguments_are_status_2_each_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing")

    assert main(["sagas", "list", "--state", "lost", "--stuck-for", "soon"]) == 2
    err = capsys.readouterr().err
    assert "option.state" in err
    assert "option.stuck_for" in err


def test_without_a_database_or_a_running_serve_the_tools_say_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("BOXOFFICE_VAR_DIR", str(tmp_path))

    assert main(["projections", "status"]) == 2
    assert "no `boxoffice serve`" in capsys.readouterr().err


def test_openapi_prints_the_document_with_the_configured_commands_and_connects_nowhere(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing")
    monkeypatch.setenv("COMMAND_MODULES", "tests.support.commands")

    assert main(["openapi"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["openapi"] == "3.1.0"
    assert "/shows/{show_id}" in document["paths"]
    assert document["servers"] == [{"url": "/", "description": "this service"}]
    assert all(
        operation["tags"] and operation["description"]
        for item in document["paths"].values()
        for operation in item.values()
    )
