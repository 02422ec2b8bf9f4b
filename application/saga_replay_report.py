"""What a saga replay reports: each saga's recorded and replayed decisions, how they
compare (:class:`Verdict`), where they first differ, and the counts of a whole replay."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class Decision:
    """One decision of a saga: its event's name and the commands it issues, each as
    ``(type, key, payload as canonical JSON)``; ``cause`` says what it answered."""

    name: str
    commands: tuple[tuple[str, str, str], ...]
    cause: str | None = field(default=None, compare=False)

    @classmethod
    def of(cls, event: Any, cause: str | None = None) -> Decision:
        """The decision ``event`` records."""
        issued = tuple(
            (c["type"], c["key"], json.dumps(c["payload"], sort_keys=True, default=str))
            for c in getattr(event, "commands", [])
        )
        return cls(type(event).__name__, issued, cause)

    def as_dict(self) -> dict[str, Any]:
        """The decision as JSON-ready data."""
        found: dict[str, Any] = {
            "name": self.name,
            "commands": [
                {"type": t, "key": k, "payload": json.loads(p)} for t, k, p in self.commands
            ],
        }
        if self.cause is not None:
            found["cause"] = self.cause
        return found

    def __str__(self) -> str:
        issued = ", ".join(f"{t}({k})" for t, k, _ in self.commands)
        return f"{self.name}" + (f" → {issued}" if issued else "")


class Verdict(StrEnum):
    """How a saga's replay compares with its record."""

    IDENTICAL = "identical"
    DIVERGED = "diverged"
    ERROR = "error"


@dataclass
class ReplayedSaga:
    """One saga's recorded and replayed decisions and final states."""

    saga_id: UUID
    # What the saga was started for, and its name (``reservation_id``) in reports.
    subject: str
    subject_name: str
    recorded: list[Decision]
    recorded_state: str
    replayed: list[Decision] = field(default_factory=list)
    replayed_state: str | None = None
    error: str | None = None
    # The inputs fed, in order: {"at", "name"} (an event's class, or DeadlinePassed).
    inputs: list[dict[str, str]] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        """Identical, diverged, or the replay failed."""
        if self.error is not None:
            return Verdict.ERROR
        if self.recorded == self.replayed and self.recorded_state == self.replayed_state:
            return Verdict.IDENTICAL
        return Verdict.DIVERGED

    def divergence(self) -> dict[str, Any] | None:
        """Where the replay first departs from the record: the step (0 is the start),
        the recorded and the replayed decision there (None where one has no such step)."""
        if self.verdict is not Verdict.DIVERGED:
            return None
        step = next(
            (
                i
                for i, (old, new) in enumerate(zip(self.recorded, self.replayed, strict=False))
                if old != new
            ),
            min(len(self.recorded), len(self.replayed)),
        )
        recorded = self.recorded[step] if step < len(self.recorded) else None
        replayed = self.replayed[step] if step < len(self.replayed) else None
        return {
            "step": step,
            "recorded": recorded.as_dict() if recorded else None,
            "replayed": replayed.as_dict() if replayed else None,
        }

    def as_dict(self) -> dict[str, Any]:
        """The replay of this saga as JSON-ready data."""
        return {
            "saga_id": str(self.saga_id),
            self.subject_name: self.subject,
            "verdict": self.verdict.value,
            "recorded_state": self.recorded_state,
            "replayed_state": self.replayed_state,
            "divergence": self.divergence(),
            "recorded": [d.as_dict() for d in self.recorded],
            "replayed": [d.as_dict() for d in self.replayed],
            "error": self.error,
        }


@dataclass
class ReplaySummary:
    """Counts of a replay, by verdict."""

    replayed: int = 0
    identical: int = 0
    diverged: int = 0
    errors: int = 0

    def add(self, saga: ReplayedSaga) -> None:
        """Count ``saga``."""
        self.replayed += 1
        verdict = saga.verdict
        if verdict is Verdict.IDENTICAL:
            self.identical += 1
        elif verdict is Verdict.DIVERGED:
            self.diverged += 1
        else:
            self.errors += 1
