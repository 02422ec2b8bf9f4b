"""Segments: a follower's work split by aggregate id, one share per cooperating process.

A view (or the saga runner) with ``count`` segments is followed by ``count`` followers,
each applying the events of the aggregates whose id falls in its segment and keeping
its own position in the log, as Axon's tracking processors split a stream. An
aggregate's events all fall in one segment, so their order is kept; every segment reads
the whole stream and moves its position past the events of the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True)
class Segment:
    """Segment ``index`` of ``count``: the ids whose value modulo ``count`` is ``index``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"no segment {self.index} of {self.count}")

    @classmethod
    def all(cls, count: int) -> list[Segment]:
        """The ``count`` segments of a split."""
        return [cls(index, count) for index in range(count)]

    def owns(self, key: UUID) -> bool:
        """Whether the aggregate (or saga) ``key`` falls in this segment."""
        return self.count == 1 or key.int % self.count == self.index

    @property
    def label(self) -> str:
        """The suffix of a segmented follower's name and lease (``#1/4``); none whole."""
        return "" if self.count == 1 else f"#{self.index}/{self.count}"

    def tracking_name(self, application_name: str) -> str:
        """The name this segment's position is kept under: the application's own for a
        whole follower, so that an unsplit view keeps the row it always had."""
        return application_name + self.label


WHOLE = Segment(0, 1)


def segment_names(application_name: str, count: int) -> list[str]:
    """The tracking names of the ``count`` segments of a split."""
    return [s.tracking_name(application_name) for s in Segment.all(count)]
