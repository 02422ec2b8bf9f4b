"""Webhook signatures: HMAC-SHA256 over "timestamp.body", with a freshness window."""

from __future__ import annotations

import time

from infrastructure.webhooks.signature import sign, verify

SECRET = "a-secret-of-enough-length"


def test_a_signature_verifies_with_the_secret_and_body_it_was_made_with() -> None:
    body = b'{"status": "succeeded"}'
    header = sign(SECRET, int(time.time()), body)

    assert header.startswith("t=")
    assert verify(SECRET, header, body)
    assert not verify("another-secret-entirely", header, body)
    assert not verify(SECRET, header, body + b" ")


def test_an_old_or_malformed_signature_is_refused() -> None:
    body = b"{}"

    assert not verify(SECRET, sign(SECRET, int(time.time()) - 3600, body), body)
    assert not verify(SECRET, "v1=deadbeef", body)
    assert not verify(SECRET, "t=soon,v1=deadbeef", body)
