"""How a failed attempt is recorded on its command: the error's type, message, worker,
time and category (``not_found``, ``conflict``, ``rule``, ``technical`` or a version
conflict), and for technical errors the traceback."""

from __future__ import annotations

import traceback
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import IntegrityError

from application.command import VERSION_CONFLICT
from domain.errors import ConflictError, DomainError, NotFoundError


def _described(error: BaseException, worker: str) -> dict[str, Any]:
    return {
        "type": type(error).__name__,
        "message": str(error) or type(error).__name__,
        "worker": worker,
        "at": datetime.now(UTC).isoformat(),
    }


def domain_error(error: DomainError, worker: str) -> dict[str, Any]:
    """A broken rule: categorised for the answer (404, 409, 422), never retried."""
    if isinstance(error, NotFoundError):
        category = "not_found"
    elif isinstance(error, ConflictError):
        category = "conflict"
    else:
        category = "rule"
    return {**_described(error, worker), "category": category}


def technical_error(error: Exception, worker: str) -> dict[str, Any]:
    """Anything else: retried with backoff; the traceback is for operators only."""
    trace = "".join(traceback.format_exception(error))
    return {**_described(error, worker), "category": "technical", "traceback": trace}


def conflict_error(error: IntegrityError, worker: str) -> dict[str, Any]:
    """A concurrent write to the same aggregate: the attempt runs again."""
    return {**_described(error, worker), "category": VERSION_CONFLICT}


def worker_lost_error(worker: str) -> dict[str, Any]:
    """Every attempt was lost with the process running it."""
    return {
        "type": "WorkerLost",
        "message": "every attempt was lost with its worker",
        "worker": worker,
        "at": datetime.now(UTC).isoformat(),
    }
