"""The Command aggregate: the life of one command, and which deliveries may run it."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from application.command import Attempt, Command
from application.event_log import BoxofficeApplication
from application.pipeline import CommandPipeline
from application.retry import RetryPolicy
from application.slices import build_catalog


def new_command() -> Command:
    """A command just accepted, its events not yet saved."""
    return Command(
        id=uuid4(),
        command_type="CreateShow",
        aggregate_id=uuid4(),
        resource="/shows/s1",
        payload={"show_id": "s1"},
        fingerprint="abc",
        correlation_id=uuid4(),
        causation_id=None,
        submitted_by="alice",
        idempotency_key="k1",
    )


def accepted() -> Command:
    command = new_command()
    command.collect_events()
    return command


def event_names(command: Command) -> list[str]:
    return [type(e).__name__ for e in command.collect_events()]


def error(kind: str = "ConnectionError") -> dict[str, str]:
    return {"type": kind, "message": "boom"}


def test_an_accepted_command_runs_its_first_attempt_only() -> None:
    command = accepted()

    assert command.status == "accepted"
    assert command.should_run(1)
    assert not command.should_run(2)


def test_a_successful_attempt_is_recorded_with_its_worker_and_times() -> None:
    command = accepted()

    attempt = command.start("host:1")
    command.succeed(attempt.number)

    assert event_names(command) == ["CommandStarted", "CommandSucceeded"]
    assert command.status == "succeeded"
    assert command.is_terminal
    assert command.attempts[0]["worker"] == "host:1"
    assert command.attempts[0]["outcome"] == "succeeded"
    assert command.attempts[0]["ended_at"] >= command.attempts[0]["started_at"]
    assert [h["status"] for h in command.history] == ["accepted", "running", "succeeded"]
    assert not command.should_run(1)


def test_an_attempt_without_a_lease_is_recorded_whole_with_its_outcome() -> None:
    command = accepted()
    began = datetime(2027, 1, 1, 20, 0, tzinfo=UTC)

    run = command.begin("host:1", began)
    assert command.is_current(run, command.version)
    command.succeed(run.number, **run.with_outcome)

    assert event_names(command) == ["CommandSucceeded"]
    assert command.status == "succeeded"
    assert command.attempt == 1
    assert command.attempts[0]["worker"] == "host:1"
    assert command.attempts[0]["started_at"] == began.isoformat()
    assert command.attempts[0]["outcome"] == "succeeded"
    assert [h["status"] for h in command.history] == ["accepted", "running", "succeeded"]
    assert command.history[1]["at"] == began.isoformat()


def test_a_run_without_a_lease_is_current_only_while_the_command_is_unchanged() -> None:
    command = accepted()
    version = command.version
    run = command.begin("host:1", datetime.now(UTC))
    # The broker redelivered the message and another worker took the lease.
    command.start("host:2")

    assert not command.is_current(run, version)
    assert command.is_current(Attempt(1, "host:2", None), command.version)


def test_a_failed_attempt_without_a_lease_counts_against_the_budget() -> None:
    command = accepted()
    run = command.begin("host:1", datetime.now(UTC))
    retry_at = datetime.now(UTC)
    command.schedule_retry(run.number, {"type": "Boom"}, retry_at, **run.with_outcome)

    assert command.failures_in_budget == 1
    assert command.should_run(2)
    assert [a["outcome"] for a in command.attempts] == ["retry_scheduled"]


def test_a_redelivered_running_attempt_runs_again_as_a_new_attempt() -> None:
    command = accepted()
    command.start("host:1")

    assert command.should_run(1, redelivered=True)
    assert command.start("host:2").number == 2
    assert command.attempts[0]["outcome"] == "lost"
    assert command.attempts_in_budget == 2


def test_a_fresh_duplicate_of_a_running_attempt_leaves_the_run_alone() -> None:
    command = accepted()
    command.start("host:1")

    assert not command.should_run(1)
    assert not command.should_run(2, redelivered=True)


def test_a_retry_schedules_the_next_attempt_and_stale_deliveries_are_refused() -> None:
    command = accepted()
    command.start("host:1")
    retry_at = datetime(2030, 1, 1, tzinfo=UTC)

    command.schedule_retry(1, error(), retry_at)

    assert command.status == "retrying"
    assert command.retry_at == retry_at
    assert command.should_run(2)
    assert not command.should_run(1)


def test_a_domain_failure_is_final() -> None:
    command = accepted()
    command.start("host:1")

    command.fail(1, error("SeatUnavailableError"))

    assert command.status == "failed"
    assert command.error == error("SeatUnavailableError")
    assert not command.should_run(1)
    assert not command.should_run(2)


def test_a_redrive_gives_a_dead_lettered_command_a_fresh_budget() -> None:
    command = accepted()
    for attempt in (1, 2, 3):
        command.start("host:1")
        if attempt < 3:
            command.schedule_retry(attempt, error(), datetime.now(UTC))
    command.dead_letter(3, error())
    command.collect_events()

    command.redrive(by="ops", reason="gateway is back")

    assert event_names(command) == ["CommandRedriven"]
    assert command.history[-1]["detail"] == "re-driven after attempts 1, 2, 3: gateway is back"
    assert command.status == "retrying"
    assert command.attempts_in_budget == 0
    assert command.should_run(4)


def test_a_held_command_moves_only_by_the_events_that_follow_on_from_it() -> None:
    """What a synchronous answer applies from the watcher's events: the next ones in
    order; events it has are skipped, and a gap calls for a read (None)."""
    app = BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    pipeline = CommandPipeline(app, build_catalog(), RetryPolicy())
    command = new_command()
    app.save(command)
    run = command.start("w")
    app.save(command)
    command.fail(run.number, error("Refused"))
    app.save(command)
    log = list(app.recorder.select_notifications(start=None, limit=10))

    def held(version: int) -> Command:
        found: object = app.repository.get(command.id, version=version)
        assert isinstance(found, Command)
        return found

    at_first = held(1)
    assert pipeline.advanced(at_first, log[1:]) == (at_first, log[2].id)
    assert (at_first.version, at_first.status) == (3, "failed")
    second = held(2)
    assert pipeline.advanced(second, log) == (second, log[2].id)  # the first two skipped
    assert second.status == "failed"
    assert pipeline.advanced(held(1), log[2:]) is None  # a gap: read it
    assert pipeline.advanced(held(3), log) is None  # nothing new
