"""Segments: a view or the saga runner split by aggregate id, each share kept apart, the
whole the same; and a saga decision that finds its saga changed is taken again."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Tracking

from application.event_log import BoxofficeApplication
from application.saga_runner import ApplicationStore, SagaConflictError, SagaRunner
from application.segment import WHOLE, Segment
from domain.saga import Saga
from projections.command_registry import CommandRegistryProjection
from projections.document_view import InMemoryDocumentView
from tests.support.world import World


def test_each_id_falls_in_exactly_one_segment_of_a_split() -> None:
    ids = [uuid.uuid4() for _ in range(200)]
    split = Segment.all(3)

    owners = [[s for s in split if s.owns(i)] for i in ids]

    assert all(len(found) == 1 for found in owners)
    assert {found[0].index for found in owners} == {0, 1, 2}  # every segment has some
    assert all(WHOLE.owns(i) for i in ids)
    assert [s.tracking_name("App") for s in split] == ["App#0/3", "App#1/3", "App#2/3"]
    assert WHOLE.tracking_name("App") == "App"  # an unsplit view keeps its row
    with pytest.raises(ValueError, match="no segment 3 of 3"):
        Segment(3, 3)


def registry_events(world: World) -> list[Any]:
    topics = set(CommandRegistryProjection.event_topics())
    return [
        world.app.mapper.to_domain_event(n)
        for n in world.app.recorder.select_notifications(start=0, limit=10_000)
        if n.topic in topics
    ]


def test_a_view_split_in_two_segments_has_the_documents_of_the_whole(
    world: World,
) -> None:
    for n in range(12):
        world.place(f"r{n}", [f"A{n % 4 + 1}"], "tok_approve")
    events = registry_events(world)
    whole_view = InMemoryDocumentView(tuple(CommandRegistryProjection.view_class.columns))
    split_view = InMemoryDocumentView(
        tuple(CommandRegistryProjection.view_class.columns), segments=2
    )
    whole = CommandRegistryProjection(whole_view, world.app.repository)
    halves = [
        CommandRegistryProjection(split_view, world.app.repository, segment)
        for segment in Segment.all(2)
    ]
    app = world.app.name

    whole.process_events([(e, Tracking(app, i + 1)) for i, e in enumerate(events)])
    applied: dict[str, set[UUID]] = {}
    for half in halves:
        # Each segment reads the whole stream, in batches, under its own name.
        name = half.segment.tracking_name(app)
        for start in range(0, len(events), 5):
            batch = events[start : start + 5]
            half.process_events([(e, Tracking(name, start + i + 1)) for i, e in enumerate(batch)])
        applied[half.name] = {e.originator_id for e in events if half.segment.owns(e.originator_id)}

    keys = {e.originator_id for e in events}
    assert {h.name for h in halves} == {"command_registry#0/2", "command_registry#1/2"}
    assert all(applied.values())
    assert set.union(*applied.values()) == keys
    assert not set.intersection(*applied.values())
    assert all(split_view.get(k) == whole_view.get(k) for k in keys)
    # Each segment moved past the others' events: the view is at the end of the stream.
    assert split_view.segment_positions(app) == {"#0/2": len(events), "#1/2": len(events)}
    assert split_view.view_position(app) == whole_view.view_position(app) == len(events)


def test_a_split_view_is_only_as_far_as_its_slowest_segment() -> None:
    view = InMemoryDocumentView(segments=2)

    view.upsert_many({}, Tracking("App#0/2", 7))
    assert view.view_position("App") is None  # one segment has applied nothing yet
    view.upsert_many({}, Tracking("App#1/2", 3))

    assert view.view_position("App") == 3


def test_a_document_is_never_moved_back_to_an_earlier_event() -> None:
    view = InMemoryDocumentView()
    key = uuid.uuid4()

    view.upsert_many({key: ({"v": "later"}, {}, 9)}, Tracking("App#0/2", 9))
    # A new segment applying again events an old one applied (the segments changed).
    view.upsert_many({key: ({"v": "earlier"}, {}, 4)}, Tracking("App#1/2", 4))

    assert view.get(key) == {"v": "later", "position": 9}


@pytest.fixture
def world(app: BoxofficeApplication) -> World:
    world = World(app)
    world.create_show(["A1", "A2", "A3", "A4"], price_cents=1500)
    return world


# --- a decision taken on a saga that changed since it was loaded -------------------------


class TallyState(StrEnum):
    """A tally is always open."""

    OPEN = "open"


class Tally(Saga):
    """A saga whose every step counts: two decisions taken at once must both be kept."""

    class Event(Saga.Event):
        """Base of the tally's events."""

    class Created(Event, Aggregate.Created):
        """The tally's start."""

    @event("TallyStarted")
    def __init__(self, owner: str | None) -> None:
        self.owner = owner
        self.state = TallyState.OPEN
        self.issued: list[dict[str, Any]] = []
        self.decisions: list[dict[str, Any]] = []
        self.marks: list[str] = []

    @property
    def is_finished(self) -> bool:
        return False

    @event("TallyMarked")
    def mark(self, by: str) -> None:
        self.marks.append(by)


class RacingStore(ApplicationStore):
    """Lets another decision on the saga be recorded between a decision's load and its
    save, ``times`` times."""

    def __init__(self, app: BoxofficeApplication, other: SagaRunner, times: int) -> None:
        super().__init__(app)
        self.other = other
        self.times = times

    def save(self, *aggregates: Aggregate) -> None:
        if self.times and any(isinstance(a, Tally) for a in aggregates):
            self.times -= 1
            tally = next(a for a in aggregates if isinstance(a, Tally))
            self.other.decide(tally.id, "other", lambda saga: saga.mark("other"))
        super().save(*aggregates)


def runner(world: World, store: ApplicationStore) -> SagaRunner:
    return SagaRunner(None, store, world.pipeline, [], clock=lambda: world.now)


def test_a_decision_that_finds_its_saga_changed_is_taken_again_on_what_it_now_is(
    world: World,
) -> None:
    tally = Tally(owner=None)
    world.app.save(tally)
    other = runner(world, ApplicationStore(world.app))
    racing = runner(world, RacingStore(world.app, other, times=2))

    # Twice another decision (a deadline fired by another segment, say) is recorded
    # between this one's load and its save: each save conflicts, and it decides again.
    assert racing.decide(tally.id, "mine", lambda saga: saga.mark("mine")) == 1

    kept: Tally = world.app.repository.get(tally.id)
    assert kept.marks == ["other", "other", "mine"]


def test_a_saga_that_keeps_changing_under_a_decision_is_an_error_not_a_lost_decision(
    world: World,
) -> None:
    tally = Tally(owner=None)
    world.app.save(tally)
    other = runner(world, ApplicationStore(world.app))
    racing = runner(world, RacingStore(world.app, other, times=1_000))

    with pytest.raises(SagaConflictError, match="changed under 10 decisions"):
        racing.decide(tally.id, "mine", lambda saga: saga.mark("mine"))
    kept: Tally = world.app.repository.get(tally.id)
    assert "mine" not in kept.marks
