"""What a query asks of the read side: filter values, a page, and the :class:`Reader` port.

The views (``projections/``) implement these; the application's operator use cases and
the HTTP edge only speak this vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

# A page of documents, and the cursor of the next one (None on the last).
Page = tuple[list[dict[str, Any]], str | None]


@dataclass(frozen=True)
class OneOf:
    """A filter value: the column equals one of ``values``."""

    values: tuple[Any, ...]

    def matches(self, value: Any) -> bool:
        """Whether ``value`` passes."""
        return value in self.values


@dataclass(frozen=True)
class Between:
    """A filter value: ``low <= column < high`` (either bound may be open)."""

    low: Any = None
    high: Any = None

    def matches(self, value: Any) -> bool:
        """Whether ``value`` passes (a missing value never does)."""
        return (
            value is not None
            and (self.low is None or value >= self.low)
            and (self.high is None or value < self.high)
        )


class Reader(Protocol):
    """What a query reads: documents of the views by name (:class:`~projections.
    read_models.ReadModels` is one)."""

    def get(self, name: str, key: UUID) -> dict[str, Any] | None:
        """The document of ``key`` in view ``name``, with its ``position``, or None."""
        ...

    def page(self, name: str, filters: dict[str, Any], cursor: str | None, limit: int) -> Page:
        """A page of view ``name`` matching ``filters`` (column → value, :class:`OneOf`
        or :class:`Between`), oldest first, after ``cursor``."""
        ...

    def recent(self, name: str, filters: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """The ``limit`` documents of view ``name`` matching ``filters`` that were
        inserted last, newest first."""
        ...

    def written(self, name: str, keys: Sequence[UUID]) -> dict[UUID, tuple[int, datetime]]:
        """For each of ``keys`` with a document in view ``name``: the position of the
        event it was last written for, and when."""
        ...

    def counts(self, name: str, column: str) -> dict[str, int]:
        """How many documents of view ``name`` have each value of indexed ``column``."""
        ...


class ViewPositions(Protocol):
    """How far each view is in the log (:class:`~projections.read_models.ReadModels`)."""

    @property
    def names(self) -> list[str]:
        """The views' names."""
        ...

    def position(self, name: str) -> int:
        """The position of the last event view ``name`` applied (0 for none)."""
        ...

    def segment_positions(self, name: str) -> dict[str, int | None]:
        """The position of each segment (``#0/2``) of a view split into segments."""
        ...

    def pending(self, name: str, upto: int, limit: int) -> int:
        """How many events of the view's topics up to ``upto`` it has yet to apply,
        counted up to ``limit``."""
        ...

    def count_between(self, name: str, after: int, upto: int, limit: int) -> int:
        """How many events of the view's topics lie in ``(after, upto]``, up to ``limit``."""
        ...

    def frontiers(self, names: Sequence[str]) -> dict[str, int | None]:
        """The position of the first event each view of ``names`` has yet to apply
        (None: none)."""
        ...
