"""Schemathesis drives the live service from its OpenAPI document: no answer is a 5xx,
and every answer conforms to the document (status, content type, headers, body)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ADMIN_TOKEN, LiveService

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def test_generated_requests_get_documented_answers_and_no_server_error(live: LiveService) -> None:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{live.base}/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,"
            "content_type_conformance,response_headers_conformance",
            "--max-examples",
            "25",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "40",
            "--seed",
            "1",
            "--header",
            # An admin reaches every operation; test_auth.py holds the other keys' answers.
            f"Authorization: Bearer {ADMIN_TOKEN}",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert generated is not None, result.stdout[-3000:]
    assert int(generated[1]) >= 200
    assert generated[1] == generated[2]
    document = live.client().request("GET", "/openapi.json").body
    operations = sum(len(item) for item in document["paths"].values())
    assert f"Tested: {operations}" in result.stdout
