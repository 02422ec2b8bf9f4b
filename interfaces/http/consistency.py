"""Reading your writes: ``Consistency-Token`` on reads, and which views a document's
outcome has reached."""

from __future__ import annotations

import re
from typing import Any

from flask import request

from application.command import TERMINAL
from interfaces.bootstrap import Container
from interfaces.http.context import prefer_wait
from interfaces.http.problems import Problem

# A position of the event log, in ASCII digits ("²" is a digit to str.isdigit()).
TOKEN = re.compile(r"[0-9]{1,18}")
# How long a read with a Consistency-Token and no Prefer: wait waits for its view.
CONSISTENCY_WAIT_SECONDS = 5.0


def await_consistency(built: Container, view_name: str) -> None:
    """With a ``Consistency-Token``, wait until the view has processed that position."""
    token = request.headers.get("Consistency-Token")
    if token is None:
        return
    if not TOKEN.fullmatch(token):
        raise Problem(
            400,
            "Invalid consistency token",
            "Consistency-Token must be a token given by this API",
            kind="validation-error",
            errors=[{"location": "header.Consistency-Token", "message": "not a token"}],
        )
    wait = prefer_wait(built.settings.max_wait_seconds)
    if wait is None:
        wait = min(CONSISTENCY_WAIT_SECONDS, built.settings.max_wait_seconds)
    if not built.read_models.await_reached(view_name, int(token), wait):
        raise Problem(
            503,
            "Not caught up",
            f"the {view_name} view has not reached position {token} yet",
            kind="not-caught-up",
            headers={"Retry-After": "1"},
        )


def with_consistency(built: Container, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add to each command document its outcome's consistency token and which views
    have caught up with it, in a number of queries that does not grow with the page."""
    positions = [document.pop("position", None) for document in documents]
    known = [p for p in positions if p is not None]
    reached = iter(built.read_models.reached_by_view(known) if known else [])
    for document, position in zip(documents, positions, strict=True):
        terminal = document.get("status") in TERMINAL
        document["consistency_token"] = str(position) if terminal and position else None
        if position is not None:
            document["projections"] = next(reached)
    return documents
