"""Domain errors: the reasons a command *fails* rather than retries.

Every business rule that a command can break raises a subclass of :class:`DomainError`.
Anything else raised while a command runs is technical and is retried.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every broken business rule; a command that raises one fails for good."""


class ConflictError(DomainError):
    """Raised when the aggregate's current state forbids the command (e.g. a taken seat)."""


class RuleViolationError(DomainError):
    """Raised when the command breaks a rule whatever the state (e.g. an unknown seat)."""


class NotFoundError(DomainError):
    """Raised when the command addresses an aggregate that does not exist."""
