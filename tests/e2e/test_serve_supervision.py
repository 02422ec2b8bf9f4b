"""``boxoffice serve`` restarts a part that dies, says so, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import fresh_database
from tests.e2e.conftest import free_port
from tests.support.processes import ROOT, http_ready, service_env, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def started_pid(log: Path, part: str, after: int = 0) -> int | None:
    pids = [int(p) for p in re.findall(rf"{part} started \(pid (\d+)\)", log.read_text())]
    later = [pid for pid in pids if pid != after]
    return later[-1] if later else None


def start_serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``boxoffice serve`` in a session of its own, its output in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "interfaces.cli.main", "serve"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def boxoffice(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """One operator command, to its end."""
    return subprocess.run(
        [sys.executable, "-m", "interfaces.cli.main", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_serve_restarts_a_killed_part_and_keeps_serving(
    server_database_url: str, broker_url: str, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with fresh_database(server_database_url) as database_url:
        env = service_env(database_url, broker_url, f"serve.{tmp_path.name}", WEB_PORT=str(port))
        serve = start_serve(env, log)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until(http_ready(base + "/health"), 60, "serve to answer")
            relay = started_pid(log, "relay")
            assert relay is not None

            os.kill(relay, signal.SIGKILL)

            wait_until(
                lambda: "relay exited with -9; restarting it" in log.read_text(),
                20,
                "the restart notice",
            )
            wait_until(
                lambda: started_pid(log, "relay", after=relay) is not None, 20, "a new relay"
            )
            request = urllib.request.Request(  # noqa: S310 - loopback test URL
                base + "/shows/after-restart",
                method="PUT",
                data=json.dumps(
                    {
                        "title": "Hamlet",
                        "starts_at": "2027-01-01T20:00:00Z",
                        "seats": ["A1"],
                        "price_cents": 100,
                    }
                ).encode(),
                headers={"Content-Type": "application/json", "Prefer": "wait=20"},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
                assert answer.status == 201  # published by the new relay, run, answered
        finally:
            serve.send_signal(signal.SIGTERM)
            code = serve.wait(30)
    assert code == 0, log.read_text()[-3000:]


def test_the_operator_commands_find_the_embedded_database_of_make_run(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        key: value
        for key, value in service_env("", "", "unused").items()
        if key not in ("DATABASE_URL", "BROKER_URL", "COMMAND_QUEUE")
    }
    env.update(BOXOFFICE_VAR_DIR=str(tmp_path / "var"), WEB_PORT=str(port))
    serve = start_serve(env, log)
    try:
        wait_until(http_ready(f"http://127.0.0.1:{port}/health"), 120, "serve to answer")
        status = boxoffice(env, "projections", "status", "--json")
        assert status.returncode == 0, status.stderr
        names = {p["name"] for p in json.loads(status.stdout)["items"]}
        assert names == {"command_registry", "shows", "reservations", "sagas"}
    finally:
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(60)
    assert code == 0, log.read_text()[-3000:]
    assert not (tmp_path / "var" / "database_url").exists()
    after = boxoffice(env, "sagas", "list")
    assert after.returncode == 2
    assert "no `boxoffice serve`" in after.stderr
