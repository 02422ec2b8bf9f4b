"""GroupCommit: writes queued behind one in flight are written together, each writer
gets its own outcome, and a writer alone is never kept waiting for company."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import partial

import pytest

from infrastructure.group_commit import GroupCommit
from tests.support.processes import wait_until


class Writes:
    """A ``write_group`` that records its groups; the first is held until released, and
    an item "fail-group" fails its whole group, an item "refuse" only itself."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.release = threading.Event()

    def __call__(self, items: Sequence[str]) -> list[str | BaseException]:
        self.groups.append(list(items))
        if len(self.groups) == 1:
            self.release.wait(10)
        if "fail-group" in items:
            raise ConnectionError("the store went away")
        return [ValueError(item) if item == "refuse" else item.upper() for item in items]


def writing(
    group: GroupCommit[str, str], item: str, outcomes: dict[str, object]
) -> threading.Thread:
    def write() -> None:
        try:
            outcomes[item] = group.write(item)
        except Exception as error:  # noqa: BLE001 - the test looks at it
            outcomes[item] = error

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def queued(group: GroupCommit[str, str], writes: int) -> bool:
    return group.queued == writes


def held_then(items: list[str], max_group: int = 64) -> tuple[Writes, dict[str, object]]:
    """A first write held in flight while ``items`` queue one by one, then released."""
    writes = Writes()
    group: GroupCommit[str, str] = GroupCommit(writes, max_group)
    outcomes: dict[str, object] = {}
    threads = [writing(group, "first", outcomes)]
    wait_until(lambda: len(writes.groups) == 1, 5, "the first write in flight")
    for n, item in enumerate(items, start=1):
        threads.append(writing(group, item, outcomes))
        wait_until(partial(queued, group, n), 5, f"{n} writes queued")
    writes.release.set()
    for thread in threads:
        thread.join(5)
    return writes, outcomes


def test_a_write_alone_is_written_at_once() -> None:
    writes = Writes()
    writes.release.set()
    group: GroupCommit[str, str] = GroupCommit(writes, 64)

    assert group.write("a") == "A"
    assert group.write("b") == "B"
    assert writes.groups == [["a"], ["b"]]


def test_the_writes_queued_behind_one_in_flight_are_written_together() -> None:
    writes, outcomes = held_then(["b", "c", "d"])

    assert writes.groups == [["first"], ["b", "c", "d"]]
    assert outcomes == {"first": "FIRST", "b": "B", "c": "C", "d": "D"}


def test_each_writer_gets_its_own_outcome() -> None:
    _, outcomes = held_then(["b", "refuse", "d"])

    assert isinstance(outcomes["refuse"], ValueError)
    assert (outcomes["b"], outcomes["d"]) == ("B", "D")


def test_a_failed_group_fails_its_writers_and_no_others() -> None:
    writes, outcomes = held_then(["b", "fail-group"], max_group=2)

    assert writes.groups == [["first"], ["b", "fail-group"]]
    assert isinstance(outcomes["b"], ConnectionError)
    assert isinstance(outcomes["fail-group"], ConnectionError)
    assert outcomes["first"] == "FIRST"


def test_a_group_holds_at_most_max_group_writes() -> None:
    writes, outcomes = held_then(["b", "c", "d", "e", "f"], max_group=2)

    assert writes.groups == [["first"], ["b", "c"], ["d", "e"], ["f"]]
    assert outcomes == {item: item.upper() for item in ["first", "b", "c", "d", "e", "f"]}


def test_a_group_holds_at_least_one_write() -> None:
    with pytest.raises(ValueError, match="at least one"):
        GroupCommit(Writes(), 0)
