"""The operator's CLI against a running stack: PostgreSQL, RabbitMQ, relay, worker,
projector and saga runner, with dead letters (``tok_outage``), a saga stuck behind one,
and a projection behind the head."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from application.operations import views
from application.unit_of_work import find_aggregate
from domain.reservation_saga import ReservationSaga
from projections.reservations import ReservationsProjection
from tests.conftest import fresh_database
from tests.integration.conftest import Stack
from tests.support.commands import Tally
from tests.support.processes import ROOT, ServiceProcess, running, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

SEATS = ["A1", "A2", "A3", "A4"]


class Scenario:
    """The stack, its projector (stopped and started by the tests), and what it holds."""

    def __init__(self, stack: Stack, projector: ServiceProcess) -> None:
        self.stack = stack
        self.projector = projector
        self.show_id = f"s-{uuid.uuid4().hex[:6]}"
        self.reservations = {
            card: f"r-{card.removeprefix('tok_')}-{uuid.uuid4().hex[:6]}"
            for card in ("tok_approve", "tok_decline", "tok_outage")
        }

    def cli(self, *args: str) -> tuple[int, Any, str]:
        """Run ``boxoffice ARGS``: its exit status, its output (parsed with --json)."""
        done = subprocess.run(
            [sys.executable, "-m", "interfaces.cli.main", *args],
            env=self.stack.env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        out: Any = done.stdout
        if "--json" in args and done.stdout.strip():
            out = json.loads(done.stdout)
        return done.returncode, out, done.stderr

    def saga_state(self, card: str) -> str | None:
        saga = find_aggregate(
            self.stack.container.app, ReservationSaga.create_id(self.reservations[card])
        )
        return saga.state.value if isinstance(saga, ReservationSaga) else None


@pytest.fixture(scope="module")
def scenario(
    server_database_url: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    log_dir: Path = tmp_path_factory.mktemp("operator")
    # A deadline far off: the saga of the outage stays stuck behind its dead letter.
    settings = {"PAYMENT_DEADLINE_SECONDS": "600"}
    with fresh_database(server_database_url) as database_url:
        stack = Stack(database_url, broker_url, f"operator.{uuid.uuid4().hex[:8]}", log_dir)
        projector = stack.process("projector", **settings)
        parts = [stack.process(p, **settings) for p in ("relay", "worker", "saga-runner")]
        with running(*parts):
            projector.start()
            built = Scenario(stack, projector)
            show = stack.submit(
                "CreateShow",
                show_id=built.show_id,
                title="Hamlet",
                starts_at="2027-01-01T20:00:00Z",
                seats=SEATS,
                price_cents=2500,
            )
            assert stack.outcome(show.command.id).status == "succeeded"
            for seat, (card, reservation_id) in zip(
                SEATS, built.reservations.items(), strict=False
            ):
                stack.submit(
                    "PlaceReservation",
                    reservation_id=reservation_id,
                    show_id=built.show_id,
                    customer_id="c1",
                    seats=[seat],
                    card_token=card,
                )
            expected = {
                "tok_approve": "confirmed",
                "tok_decline": "rejected",
                "tok_outage": "charging",
            }
            wait_until(
                lambda: {c: built.saga_state(c) for c in expected} == expected, 60, "the sagas"
            )
            # The outage's charge is dead-lettered, and the views have it.
            wait_until(
                lambda: (
                    built.cli("deadletters", "list", "--json")[1]["counts"]
                    == {"PaymentGatewayUnavailableError": 1}
                ),
                60,
                "the dead letter in the registry",
            )
            try:
                yield built
            finally:
                projector.stop()
        stack.container.close()


def test_commands_list_by_resource_status_and_time(scenario: Scenario) -> None:
    reservation = scenario.reservations["tok_approve"]

    for resource in (reservation, f"/reservations/{reservation}"):
        code, out, _ = scenario.cli("commands", "list", "--resource", resource, "--json")
        assert code == 0
        assert {i["type"] for i in out["items"]} == {
            "PlaceReservation",
            "ReserveSeats",
            "ChargePayment",
            "ConfirmReservation",
        }
    code, out, _ = scenario.cli("commands", "list", "--status", "dead_lettered", "--json")
    assert [i["type"] for i in out["items"]] == ["ChargePayment"]
    code, out, _ = scenario.cli("commands", "list", "--since", "2999-01-01T00:00:00Z", "--json")
    assert (code, out["items"]) == (0, [])


def test_bad_arguments_are_all_listed_with_status_2(scenario: Scenario) -> None:
    code, _, err = scenario.cli(
        "commands", "list", "--status", "lost", "--since", "yesterday", "--resource", "a b"
    )

    assert code == 2
    for location in ("option.status", "option.since", "option.resource"):
        assert location in err


def test_commands_show_gives_tracebacks_and_the_events_a_success_saved(
    scenario: Scenario,
) -> None:
    _, listed, _ = scenario.cli("commands", "list", "--status", "dead_lettered", "--json")
    dead = listed["items"][0]["command_id"]
    code, out, _ = scenario.cli("commands", "show", dead, "--json")
    assert code == 0
    assert len(out["attempts"]) == 3
    assert all("PaymentGatewayUnavailableError" in a["error"]["traceback"] for a in out["attempts"])

    _, listed, _ = scenario.cli("commands", "list", "--type", "CreateShow", "--json")
    code, out, _ = scenario.cli("commands", "show", listed["items"][0]["command_id"], "--json")
    assert [e["event"] for e in out["caused"]] == ["ShowScheduled"]

    # A confirmation's timeline: each hop with its time, up to the reservation it
    # confirmed visible in the reservations view (whose row nothing wrote since).
    _, listed, _ = scenario.cli("commands", "list", "--type", "ConfirmReservation", "--json")
    confirmed = listed["items"][0]["command_id"]
    code, out, _ = scenario.cli("commands", "show", confirmed, "--json")
    hops = {(h["hop"], h.get("view")): h["ms"] for h in out["timeline"]}
    assert {("accepted", None), ("started", None), ("outcome", None)} <= set(hops)
    assert hops[("accepted", None)] == 0
    assert hops[("outcome", None)] <= hops[("visible", "command_registry")]
    assert hops[("outcome", None)] <= hops[("visible", "reservations")]
    code, text, _ = scenario.cli("commands", "show", confirmed)
    assert "timeline" in text
    assert "reservations" in text

    code, _, err = scenario.cli("commands", "show", str(uuid.uuid4()))
    assert code == 1
    assert "no command" in err


def test_sagas_list_finds_the_one_stuck_behind_a_dead_letter(scenario: Scenario) -> None:
    stuck = scenario.reservations["tok_outage"]

    code, out, _ = scenario.cli("sagas", "list", "--dead-lettered", "--json")
    assert [s["reservation_id"] for s in out["items"]] == [stuck]
    time.sleep(1.1)
    code, out, _ = scenario.cli("sagas", "list", "--stuck-for", "1s", "--json")
    assert [s["reservation_id"] for s in out["items"]] == [stuck]
    code, out, _ = scenario.cli("sagas", "list", "--state", "confirmed", "--json")
    assert [s["reservation_id"] for s in out["items"]] == [scenario.reservations["tok_approve"]]

    code, out, _ = scenario.cli("sagas", "show", stuck, "--json")
    assert code == 0
    commands = {e["name"]: e["status"] for e in out["timeline"] if e["kind"] == "command"}
    assert commands["ChargePayment"] == "dead_lettered"
    code, text, _ = scenario.cli("sagas", "show", stuck)
    assert "received" in text
    assert "SagaSeatsHeld" in text
    assert "dead_lettered" in text


def test_sagas_replay_finds_no_divergence_and_exactly_those_of_a_changed_rule(
    scenario: Scenario,
) -> None:
    code, out, _ = scenario.cli("sagas", "replay", "--all", "--json")
    assert code == 0
    assert out["summary"]["replayed"] == out["summary"]["identical"] == 3

    code, out, _ = scenario.cli(
        "sagas",
        "replay",
        "--all",
        "--saga-class",
        "tests.support.sagas:DeclineExpiresSaga",
        "--json",
    )
    assert code == 3
    assert out["summary"]["diverged"] == 1
    assert [s["reservation_id"] for s in out["sagas"]] == [scenario.reservations["tok_decline"]]

    code, text, _ = scenario.cli(
        "sagas",
        "replay",
        scenario.reservations["tok_decline"],
        "--saga-class",
        "tests.support.sagas:DeclineExpiresSaga",
    )
    assert code == 3
    assert "changes the outcome of 1 saga" in text

    code, _, err = scenario.cli("sagas", "replay", "--all", "--saga-class", "no.such:Saga")
    assert code == 2
    assert "option.saga_class" in err or "saga_class" in err


def test_deadletters_redrive_by_type_completes_once_and_refuses_the_rest(
    scenario: Scenario, tmp_path: Path
) -> None:
    stack = scenario.stack
    flaky = stack.submit(
        "Flaky", "op-flaky", key="op", failures=3, attempts_file=str(tmp_path / "n")
    ).command.id
    assert stack.outcome(flaky).status == "dead_lettered"
    failed = stack.submit("Bump", "op-refused", key="op", refuse=True).command.id
    assert stack.outcome(failed).status == "failed"
    wait_until(
        lambda: (
            scenario.cli("deadletters", "list", "--json")[1]["counts"]
            == {"ConnectionError": 1, "PaymentGatewayUnavailableError": 1}
        ),
        30,
        "both dead letters listed",
    )

    code, out, _ = scenario.cli("deadletters", "redrive", "--type", "ConnectionError", "--json")
    assert code == 0
    assert out["results"] == [
        {"command_id": str(flaky), "result": "redriven", "detail": "next attempt 4"}
    ]
    wait_until(lambda: stack.command(flaky).status == "succeeded", 30, "the re-driven command")
    code, out, _ = scenario.cli("deadletters", "redrive", str(flaky), str(failed), "--json")

    assert [r["result"] for r in out["results"]] == ["skipped", "skipped"]
    assert "status failed" in out["results"][1]["detail"]
    tally: Tally = stack.container.app.repository.get(Tally.create_id("op"))
    assert tally.count == 1
    assert [e["status"] for e in stack.command(flaky).history].count("retrying") >= 1


def test_sagas_retry_reissues_the_stuck_step_linked_to_it(scenario: Scenario) -> None:
    stuck = scenario.reservations["tok_outage"]

    code, out, _ = scenario.cli("sagas", "retry", stuck, "--json")

    assert code == 0
    (step,) = out["steps"]
    assert step["result"] == "issued"
    command = scenario.stack.command(uuid.UUID(step["command_id"]))
    assert command.command_type == "ChargePayment"
    assert command.correlation_id == ReservationSaga.create_id(stuck)
    assert command.causation_id is not None
    assert "retried by cli" in command.causation_id
    code, _, err = scenario.cli("sagas", "retry", scenario.reservations["tok_approve"])
    assert code == 1
    assert "confirmed" in err


def test_projections_status_shows_a_view_behind_the_head(scenario: Scenario) -> None:
    scenario.projector.stop()
    try:
        scenario.stack.submit("Bump", None, key="lag")
        code, out, _ = scenario.cli("projections", "status", "--sample", "0.2", "--json")
    finally:
        scenario.projector.start()
    lags = {p["name"]: p["lag"] for p in out["items"]}
    assert code == 0
    assert lags["command_registry"] >= 1
    assert lags["shows"] == 0


class ShoutingReservations(ReservationsProjection):
    """A deliberately changed projection: statuses in capitals."""

    name = ReservationsProjection.name

    @classmethod
    def present(cls, aggregate: Any) -> dict[str, Any]:
        document = super().present(aggregate)
        return {**document, "status": document["status"].upper()}


def test_a_rebuild_shows_the_diff_and_swaps_only_when_asked_while_reads_go_on(
    scenario: Scenario,
) -> None:
    code, out, _ = scenario.cli("projections", "rebuild", "reservations", "--json")
    assert code == 0
    assert out["diff"]["differing"] == 0
    assert out["diff"]["shadow_rows"] == out["diff"]["live_rows"] == 3

    container = scenario.stack.container
    read = container.read_models
    confirmed = ReservationsProjection.key(scenario.reservations["tok_approve"])
    assert confirmed is not None
    failures: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                assert read.get("reservations", confirmed) is not None
            except BaseException as error:  # noqa: BLE001 - reported by the test
                failures.append(error)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        kept = views.rebuild(container.operator, ShoutingReservations, swap=False)
        assert kept["diff"]["differing"] == 3
        assert read.get("reservations", confirmed)["status"] == "confirmed"  # type: ignore[index]
        swapped = views.rebuild(container.operator, ShoutingReservations, swap=True)
        assert swapped["swapped_at"] is not None
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert read.get("reservations", confirmed)["status"] == "CONFIRMED"  # type: ignore[index]

    # The live projector goes on writing into the swapped-in table.
    extra = f"r-after-{uuid.uuid4().hex[:6]}"
    scenario.stack.submit(
        "PlaceReservation",
        reservation_id=extra,
        show_id=scenario.show_id,
        customer_id="c2",
        seats=["A4"],
        card_token="tok_approve",
    )
    key = ReservationsProjection.key(extra)
    assert key is not None
    wait_until(lambda: read.get("reservations", key) is not None, 30, "the next reservation")
    code, out, _ = scenario.cli("projections", "rebuild", "reservations", "--swap", "--json")
    assert (code, out["swapped"]) == (0, True)
    assert read.get("reservations", confirmed)["status"] == "confirmed"  # type: ignore[index]
