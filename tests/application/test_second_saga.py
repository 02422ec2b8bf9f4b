"""A second saga, added by a module of COMMAND_MODULES alone, runs beside the reservation
saga: the runner, the replay and the composition root take it without a change."""

from __future__ import annotations

from eventsourcing.utils import get_topic

from application.event_log import BoxofficeApplication
from application.saga_replay import SagaReplayer
from application.saga_replay_report import Verdict
from application.saga_runner import ApplicationStore, SagaRunner, issued_command_id
from application.unit_of_work import find_aggregate
from infrastructure.history import RecordedHistory
from infrastructure.settings import Settings
from interfaces.bootstrap import bootstrap
from tests.support.loyalty import AWARDED, CONFIRMED, LoyaltyAccount, LoyaltySaga, LoyaltyState
from tests.support.world import World

MODULE = "tests.support.loyalty"


def loyal_world(app: BoxofficeApplication) -> World:
    world = World(app, modules=[MODULE])
    world.create_show(["A1", "A2", "A3"], price_cents=1500)
    return world


def test_a_confirmed_reservation_runs_the_second_saga_to_its_end(
    app: BoxofficeApplication,
) -> None:
    # Given the loyalty module loaded beside the reservation commands,
    world = loyal_world(app)

    # when a reservation of two seats is paid and confirmed,
    world.place("r1", ["A1", "A2"])

    # then the reservation saga ends as always, and the loyalty saga awarded the points
    # through the pipeline, correlated with it, and finished.
    assert world.saga("r1").state == "confirmed"
    loyalty: LoyaltySaga = world.get(LoyaltySaga, LoyaltySaga.create_id("r1"))
    assert loyalty.state is LoyaltyState.DONE
    account: LoyaltyAccount = world.get(LoyaltyAccount, LoyaltyAccount.create_id("customer-r1"))
    assert account.points == 20
    award = world.pipeline.get_command(issued_command_id(loyalty.id, "award"))
    assert award is not None
    assert award.status == "succeeded"
    assert award.correlation_id == loyalty.id


def test_a_declined_reservation_starts_no_second_saga(app: BoxofficeApplication) -> None:
    world = loyal_world(app)

    world.place("r1", ["A1"], card="tok_decline")

    assert world.saga("r1").state == "rejected"
    assert find_aggregate(app, LoyaltySaga.create_id("r1")) is None


def test_the_replay_replays_both_kinds_of_saga(app: BoxofficeApplication) -> None:
    world = loyal_world(app)
    world.place("r1", ["A1"])
    sagas = world.pipeline.catalog.sagas
    replayer = SagaReplayer(RecordedHistory(app), world.pipeline, sagas)

    replayed = replayer.replay([world.saga("r1").id, LoyaltySaga.create_id("r1")])

    assert [(r.subject, r.verdict) for r in replayed] == [
        ("r1", Verdict.IDENTICAL),
        ("r1", Verdict.IDENTICAL),
    ]
    assert [d.name for d in replayed[1].replayed] == ["LoyaltySagaStarted", "LoyaltySagaFinished"]


def test_the_composition_root_runs_the_sagas_the_modules_register(
    app: BoxofficeApplication,
) -> None:
    container = bootstrap(Settings(command_modules=(MODULE,)), application=app)

    assert [type(s).__name__ for s in container.catalog.sagas] == [
        "ReservationSagaSlice",
        "LoyaltySlice",
    ]
    runner = SagaRunner(None, ApplicationStore(app), container.pipeline, container.catalog.sagas)
    assert {get_topic(CONFIRMED), get_topic(AWARDED)} <= set(runner.event_topics())
