"""A command as a client submits it, and what accepting it answers.

The id of a command is its client's idempotency key scoped to the client (or a fresh
one), so a retried request finds the command it made before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4, uuid5

from pydantic import BaseModel

from application.catalog import CommandSpec
from application.command import Command

COMMAND_NAMESPACE = UUID("3d0b7c8e-2f5a-5b1e-8c44-5b6f0a9e7d21")


@dataclass(frozen=True)
class Submission:
    """A command as a client submits it, validated but not yet accepted."""

    spec: CommandSpec[Any]
    payload: BaseModel
    submitted_by: str
    idempotency_key: str | None = None
    correlation_id: UUID | None = None
    causation_id: str | None = None
    callback_url: str | None = None
    owner: str | None = None

    @property
    def fingerprint(self) -> str:
        """Identifies what is asked: the same key with another fingerprint is a misuse."""
        canonical = json.dumps(
            {"type": self.spec.name, "payload": self.payload.model_dump(mode="json")},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def command_id(self) -> UUID:
        """The key scoped to the client, or a fresh id when the client gave none."""
        if self.idempotency_key is None:
            return uuid4()
        return command_id_of(self.submitted_by, self.idempotency_key)


def command_id_of(submitted_by: str, idempotency_key: str) -> UUID:
    """The id of the command ``submitted_by`` submits with ``idempotency_key``."""
    return uuid5(COMMAND_NAMESPACE, f"{submitted_by}\x00{idempotency_key}")


@dataclass(frozen=True)
class Acceptance:
    """A durably accepted command; ``replayed`` when it was accepted by an earlier request."""

    command: Command
    position: int | None
    replayed: bool


class IdempotencyKeyReusedError(Exception):
    """Raised when an ``Idempotency-Key`` is sent again with a different command."""


class ResourceExistsError(Exception):
    """Raised when a create command targets an id that is already taken."""
