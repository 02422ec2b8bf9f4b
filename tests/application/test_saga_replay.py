"""Saga replay: the recorded history replayed by the code at hand, compared per saga."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from uuid import UUID

import pytest

from application.event_log import BoxofficeApplication
from application.reservation_saga import RESERVATION_SAGA
from application.saga_replay import SagaReplayer
from application.saga_replay_report import Verdict
from domain.reservation_saga import ReservationSaga
from infrastructure.history import RecordedHistory
from tests.support.sagas import BrokenSaga, DeclineExpiresSaga
from tests.support.world import DEADLINE, World

STORIES = {
    "paid": "tok_approve",
    "declined": "tok_decline",
    "outage": "tok_outage",  # the charge dead-letters, the deadline expires it
    "flaky": "tok_flaky",
}


@pytest.fixture
def world(app: BoxofficeApplication) -> World:
    world = World(app)
    world.create_show(["A1", "A2", "A3", "A4", "A5"], price_cents=1500)
    for seat, (name, card) in zip(["A1", "A2", "A3", "A4"], STORIES.items(), strict=True):
        world.place(name, [seat], card)
    world.place("waiting", ["A1"])  # seats taken: waitlisted
    world.place("cancelled", ["A5"])
    world.place("offered", ["A5"])  # waitlisted, then offered the seat freed below
    world.submit("CancelReservation", reservation_id="cancelled")
    world.settle()
    # A reserve that fails for good: the show is cancelled before it runs.
    world.create_show(["B1"], price_cents=900, show_id="s2")
    world.hold_types = {"ReserveSeats"}
    world.place("reserve-failed", ["B1"], show_id="s2")
    world.submit("CancelShow", show_id="s2")
    world.settle()
    world.hold_types = set()
    world.release_held()
    world.pass_time(DEADLINE + timedelta(seconds=1))
    return world


def replayer(world: World, saga_class: type[ReservationSaga] = ReservationSaga) -> SagaReplayer:
    slices = [RESERVATION_SAGA.running(saga_class)]
    return SagaReplayer(RecordedHistory(world.app), world.pipeline, slices)


def saga_ids(*names: str) -> list[UUID]:
    return [ReservationSaga.create_id(name) for name in names]


NAMES = [*STORIES, "waiting", "cancelled", "offered", "reserve-failed"]


def test_the_unchanged_code_replays_every_saga_identically(world: World) -> None:
    # The story has a deadline fired and a second run after a wait.
    assert world.saga("outage").state == "expired"
    assert world.saga("offered").run == 2
    assert world.saga("reserve-failed").state == "rejected"

    replayed = replayer(world).replay(saga_ids(*NAMES))

    assert {r.subject: r.verdict for r in replayed} == dict.fromkeys(NAMES, Verdict.IDENTICAL)
    outage = next(r for r in replayed if r.subject == "outage")
    assert [d.name for d in outage.replayed][-2:] == ["SagaExpiring", "SagaFinished"]


def test_a_changed_rule_diverges_exactly_the_sagas_it_decides_differently(world: World) -> None:
    replayed = replayer(world, DeclineExpiresSaga).replay(saga_ids(*NAMES))

    diverged = {r.subject for r in replayed if r.verdict is Verdict.DIVERGED}
    assert diverged == {"declined"}
    declined = next(r for r in replayed if r.subject == "declined")
    divergence = declined.divergence()
    assert divergence is not None
    assert divergence["recorded"]["name"] == "SagaCompensating"
    assert divergence["replayed"]["name"] == "SagaExpiring"
    assert [c["type"] for c in divergence["replayed"]["commands"]] == ["ExpireReservation"]
    assert declined.recorded_state == "rejected"


def test_a_replay_changes_nothing_and_issues_nothing(world: World) -> None:
    head = world.app.recorder.max_notification_id()

    replayer(world, DeclineExpiresSaga).replay(saga_ids(*NAMES))

    assert world.app.recorder.max_notification_id() == head


def test_a_saga_that_fails_to_replay_is_reported_and_the_others_go_on(world: World) -> None:
    replayed = replayer(world, BrokenSaga).replay(saga_ids("paid", "declined"))

    verdicts = {r.subject: (r.verdict, r.error) for r in replayed}
    assert verdicts == {
        "paid": (Verdict.ERROR, "RuntimeError: a bug in the fix"),
        "declined": (Verdict.IDENTICAL, None),
    }


def test_ids_of_no_saga_are_left_out(world: World) -> None:
    assert replayer(world).replay(saga_ids("nobody")) == []


def test_a_failed_reserve_is_an_input_of_the_replay(world: World) -> None:
    (replayed,) = replayer(world).replay(saga_ids("reserve-failed"))

    assert [(d.name, d.cause) for d in replayed.replayed][1] == (
        "SagaCompensating",
        "CommandFailed (v2)",
    )


def test_a_deadline_found_passed_replays_passed_whatever_the_setting_now(world: World) -> None:
    # The payment deadline is the runner's setting: made ten times longer since, the
    # deadline the runner found passed has still passed where it did.
    longer = SagaReplayer(
        RecordedHistory(world.app),
        world.pipeline,
        [RESERVATION_SAGA],
        replace(world.services, payment_deadline=DEADLINE * 10),
    )

    (outage,) = longer.replay(saga_ids("outage"))

    assert outage.verdict is Verdict.IDENTICAL
    assert outage.replayed[-2].cause is not None
    assert outage.replayed[-2].cause.startswith("deadline at")
