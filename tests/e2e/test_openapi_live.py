"""Schemathesis drives the live service from its OpenAPI document: no answer is a 5xx,
and every answer conforms to the document (status, content type, headers, body)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ADMIN_TOKEN, LiveService

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


# Operator operations left out of the generated requests: they re-drive every dead
# letter of the other tests, rebuild or replay the whole log, or sample rates for up to
# 5 s (/projections?sample), at each call. tests/integration/test_operator_cli.py and
# tests/http/test_admin_api.py drive them.
NOT_GENERATED = ("AdminRedrive", "AdminRebuildProjection", "AdminReplaySagas", "ListProjections")


def test_generated_requests_get_documented_answers_and_no_server_error(live: LiveService) -> None:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(schemathesis),
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"{live.base}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            os.environ.get("SCHEMATHESIS_EXAMPLES", "150"),
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--request-timeout",
            "40",
            "--seed",
            "1",
            "--header",
            # An admin reaches every operation; test_auth.py holds the other keys' answers.
            f"Authorization: Bearer {ADMIN_TOKEN}",
            "--no-color",
            *(f"--exclude-operation-id={operation}" for operation in NOT_GENERATED),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    failures = result.stdout.find("=== FAILURES ===")
    assert result.returncode == 0, result.stdout[failures:][:8000] + result.stderr[-2000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert generated is not None, result.stdout[-3000:]
    assert int(generated[1]) >= 2000
    assert generated[1] == generated[2]
    document = live.client().request("GET", "/openapi.json").body
    operations = sum(len(item) for item in document["paths"].values())
    assert f"Tested: {operations - len(NOT_GENERATED)}" in result.stdout
