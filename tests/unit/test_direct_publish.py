"""The web process's publisher of first messages: it never holds up the accept, marks
what the broker took, and leaves the rest to the relay's safety net."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from infrastructure.direct_publish import DirectPublisher
from tests.unit.test_command import new_command


class Transport:
    def __init__(self, refuse: set[UUID] | None = None) -> None:
        self.published: list[tuple[UUID, int, bool]] = []
        self.refuse = refuse or set()

    def publish(
        self, command_id: UUID, attempt: int, eta: datetime | None = None, takeover: bool = False
    ) -> None:
        if command_id in self.refuse:
            raise ConnectionError("the broker went away")
        self.published.append((command_id, attempt, takeover))


class Marks:
    def __init__(self) -> None:
        self.marked: list[UUID] = []

    def mark(self, command_ids: Sequence[UUID]) -> None:
        self.marked.extend(command_ids)


def test_each_command_is_published_once_as_a_first_delivery_and_marked() -> None:
    transport, marks = Transport(), Marks()
    sources: list[str] = []
    publisher = DirectPublisher(lambda: transport, marks, grace=60, counted=sources.append)
    commands = [new_command() for _ in range(3)]
    for c in commands:
        publisher.dispatch(c)
    # Published before dispatch returns: the accepting thread sends it.
    assert transport.published == [(c.id, 1, False) for c in commands]
    publisher.close()

    assert marks.marked == [c.id for c in commands]
    assert sources == ["accepting_process"] * 3


def test_after_a_refused_publish_the_accepts_of_half_the_grace_are_left_to_the_relay() -> None:
    refused, next_one = new_command(), new_command()
    transport, marks = Transport(refuse={refused.id}), Marks()
    publisher = DirectPublisher(lambda: transport, marks, grace=60)
    publisher.dispatch(refused)
    publisher.dispatch(next_one)  # the broker is away: no accept waits on it again
    publisher.close()

    assert transport.published == []
    assert marks.marked == []


def test_a_publish_that_took_half_the_grace_is_not_marked() -> None:
    transport, marks = Transport(), Marks()
    publisher = DirectPublisher(lambda: transport, marks, grace=0)
    late = new_command()
    publisher.dispatch(late)
    publisher.close()

    # The safety net may be publishing it already: unmarked, it sends a takeover, so
    # that the command never runs twice without its lease.
    assert transport.published == [(late.id, 1, False)]
    assert marks.marked == []
