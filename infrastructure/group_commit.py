"""Group commit: the writes that wait on one another in a process share one transaction.

A writer that finds no write of the group in flight writes at once, with whatever the
others queued meanwhile: alone when the process is idle, so an accept never waits for
company. While that write is in flight, the writes that arrive queue up, and the first
of them to be woken when it ends writes them all in the next transaction. Each writer
returns only once its own write has committed (or failed): an answer never runs ahead
of its row.

No thread of its own: the writers take turns at leading, so a write waits for at most
the one transaction ahead of it, and the interpreter never has to schedule a committer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Entry(Generic[T, R]):
    item: T
    done: bool = False
    result: R | None = None
    error: BaseException | None = None
    ready: threading.Event = field(default_factory=threading.Event)


class GroupCommit(Generic[T, R]):
    """Writes items in groups with ``write_group``, which gets the items queued together
    (at most ``max_group``) and returns, in their order, each one's result or the error
    to raise to its writer. An error ``write_group`` raises is raised to every writer of
    the group."""

    def __init__(
        self,
        write_group: Callable[[Sequence[T]], Sequence[R | BaseException]],
        max_group: int,
    ) -> None:
        if max_group < 1:
            raise ValueError("a group holds at least one write")
        self._write_group = write_group
        self._max_group = max_group
        self._lock = threading.Lock()
        self._queue: list[_Entry[T, R]] = []
        self._writing = False

    @property
    def queued(self) -> int:
        """The writes waiting for the group in flight to end."""
        with self._lock:
            return len(self._queue)

    def write(self, item: T) -> R:
        """Write ``item`` with the writes queued with it; its result once committed."""
        entry: _Entry[T, R] = _Entry(item)
        with self._lock:
            self._queue.append(entry)
            group = self._lead()
        while group is None:
            entry.ready.wait()
            if entry.done:
                return self._result(entry)
            # Woken to lead the next group (which holds this entry).
            with self._lock:
                entry.ready.clear()
                group = self._lead()
        self._run(group)
        return self._result(entry)

    def _lead(self) -> list[_Entry[T, R]] | None:
        """The group to write next, when no group is in flight (under the lock)."""
        if self._writing or not self._queue:
            return None
        self._writing = True
        group = self._queue[: self._max_group]
        del self._queue[: self._max_group]
        return group

    def _run(self, group: list[_Entry[T, R]]) -> None:
        try:
            outcomes = self._write_group([entry.item for entry in group])
        except BaseException as error:  # noqa: BLE001 - handed to every writer of the group
            outcomes = [error] * len(group)
        for entry, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                entry.error = outcome
            else:
                entry.result = outcome
            entry.done = True
        with self._lock:
            self._writing = False
            waiting = self._queue[0] if self._queue else None
        for entry in group:
            entry.ready.set()
        if waiting is not None:
            # The oldest waiter leads the next group.
            waiting.ready.set()

    @staticmethod
    def _result(entry: _Entry[T, R]) -> R:
        if entry.error is not None:
            raise entry.error
        return entry.result  # type: ignore[return-value]
