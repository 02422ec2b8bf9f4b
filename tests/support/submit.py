"""The one way tests build and accept a command as a client submits it."""

from __future__ import annotations

from typing import Any

from application.pipeline import CommandPipeline
from application.submission import Acceptance, Submission


def submission(
    pipeline: CommandPipeline,
    command_type: str,
    idempotency_key: str | None = None,
    *,
    submitted_by: str = "tests",
    **payload: Any,
) -> Submission:
    """``command_type`` with ``payload`` validated by its schema, as ``submitted_by``
    submits it (with ``idempotency_key``, if given)."""
    spec = pipeline.catalog.get(command_type)
    return Submission(
        spec=spec,
        payload=spec.payload.model_validate(payload),
        submitted_by=submitted_by,
        idempotency_key=idempotency_key,
    )


def submit(
    pipeline: CommandPipeline,
    command_type: str,
    idempotency_key: str | None = None,
    *,
    submitted_by: str = "tests",
    **payload: Any,
) -> Acceptance:
    """Accept :func:`submission`'s command."""
    built = submission(
        pipeline, command_type, idempotency_key, submitted_by=submitted_by, **payload
    )
    return pipeline.accept(built)


def create_show(pipeline: CommandPipeline, show_id: str, price_cents: int = 1) -> Acceptance:
    """Accept a ``CreateShow`` of one seat, A1, for ``show_id``."""
    return submit(
        pipeline,
        "CreateShow",
        show_id=show_id,
        title="T",
        starts_at="2027-01-01T20:00:00Z",
        seats=["A1"],
        price_cents=price_cents,
    )
