"""When a technically failed command is tried again."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped, for ``max_attempts`` failed attempts and
    ``max_conflicts`` lost version conflicts."""

    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 30.0
    # A lost version conflict says "decide again on fresh state", not "this failed": it
    # does not spend an attempt, but a command that keeps losing is stopped here.
    max_conflicts: int = 20

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed ``attempt`` (1-based) before the next one.

        The delay is drawn between half the exponential bound and the bound, so retries
        of commands that failed together spread out yet still back off.
        """
        bound = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return (rng or random).uniform(bound / 2, bound)

    def exhausted(self, attempts_made: int) -> bool:
        """Whether no attempt is left after ``attempts_made``."""
        return attempts_made >= self.max_attempts


@dataclass
class Backoff:
    """The pause before resuming a long-running part after a failure.

    It starts at ``first`` and doubles up to ``longest`` while failures follow each
    other, and starts again from ``first`` after a run that lasted longer than
    ``longest`` (the dependency came back in between).
    """

    first: float = 1.0
    longest: float = 30.0
    streak: int = 0

    def after_failure(self, ran_for: float) -> float:
        """The pause to take now, after a run of ``ran_for`` seconds that failed."""
        self.streak = 1 if ran_for > self.longest else self.streak + 1
        # The exponent is capped: a streak of a thousand would overflow a float.
        return float(min(self.first * 2 ** min(self.streak - 1, 32), self.longest))
