"""The command pipeline, told as stories on the in-memory event store."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError

from application.command import Command
from application.event_log import BoxofficeApplication
from application.pipeline import CommandPipeline, Outcome
from application.slices import build_catalog
from application.submission import IdempotencyKeyReusedError, ResourceExistsError, Submission
from application.unit_of_work import UnitOfWork
from domain.show import Show
from tests.support.commands import Tally
from tests.support.submit import submission

SHOW: dict[str, Any] = {
    "title": "Hamlet",
    "starts_at": "2027-01-01T20:00:00Z",
    "seats": ["A1", "A2"],
    "price_cents": 4500,
}


def topics(app: BoxofficeApplication, originator_id: UUID) -> list[str]:
    return [type(e).__name__ for e in app.repository.event_store.get(originator_id)]


def test_an_accepted_command_is_recorded_before_anything_runs(
    pipeline: CommandPipeline, app: BoxofficeApplication
) -> None:
    acceptance = pipeline.accept(submission(pipeline, "CreateShow", "k1", show_id="s1", **SHOW))

    # Only the acceptance is in the store: the show does not exist yet.
    assert topics(app, acceptance.command.id) == ["CommandAccepted"]
    assert topics(app, Show.create_id("s1")) == []
    # Its position is where the log has it (positions are not dense on PostgreSQL).
    assert [n.id for n in app.recorder.select_notifications(None, 10)] == [acceptance.position]
    assert not acceptance.replayed


def test_a_new_command_is_accepted_with_one_write_and_no_read(
    pipeline: CommandPipeline, app: BoxofficeApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[UUID] = []
    select_events = app.recorder.select_events

    def counted(originator_id: UUID, **kwargs: Any) -> Any:
        reads.append(originator_id)
        return select_events(originator_id, **kwargs)

    monkeypatch.setattr(app.recorder, "select_events", counted)
    first = pipeline.accept(submission(pipeline, "Bump", "k1", key="t"))
    assert reads == []

    # The same key again is looked up, and answered as the first time.
    again = pipeline.accept(submission(pipeline, "Bump", "k1", key="t"))
    assert again.replayed
    assert again.command.id == first.command.id
    assert reads == [first.command.id]
    with pytest.raises(IdempotencyKeyReusedError):
        pipeline.accept(submission(pipeline, "Bump", "k1", key="other"))


def test_executing_saves_domain_events_and_the_success_together(
    pipeline: CommandPipeline, app: BoxofficeApplication
) -> None:
    acceptance = pipeline.accept(submission(pipeline, "CreateShow", "k1", show_id="s1", **SHOW))

    outcome = pipeline.execute(acceptance.command.id, 1, "worker-1")

    assert outcome is Outcome.SUCCEEDED
    assert topics(app, Show.create_id("s1")) == ["ShowScheduled"]
    # The first delivery runs without a lease: its outcome records its start.
    assert topics(app, acceptance.command.id) == ["CommandAccepted", "CommandSucceeded"]
    # The show's event and the success were written by one save: adjacent positions.
    notifications = app.notification_log.select(start=1, limit=10)
    assert [n.topic.rsplit(".", 1)[-1] for n in notifications][-2:] == [
        "ShowScheduled",
        "CommandSucceeded",
    ]


def test_the_same_key_and_payload_returns_the_original_acceptance(
    pipeline: CommandPipeline,
) -> None:
    first = pipeline.accept(submission(pipeline, "CreateShow", "k1", show_id="s1", **SHOW))
    pipeline.execute(first.command.id, 1, "worker-1")

    again = pipeline.accept(submission(pipeline, "CreateShow", "k1", show_id="s1", **SHOW))

    # Even after the show exists, the replay is the original command, not a 409.
    assert again.replayed
    assert again.command.id == first.command.id
    assert again.command.status == "succeeded"


def test_the_same_key_with_another_payload_is_refused(pipeline: CommandPipeline) -> None:
    pipeline.accept(submission(pipeline, "CreateShow", "k1", show_id="s1", **SHOW))

    with pytest.raises(IdempotencyKeyReusedError):
        pipeline.accept(
            submission(pipeline, "CreateShow", "k1", show_id="s1", **{**SHOW, "title": "Lear"})
        )


def test_keys_are_scoped_to_the_client(pipeline: CommandPipeline) -> None:
    alice = submission(pipeline, "Bump", "k1", submitted_by="alice", key="t")
    bob = Submission(
        spec=alice.spec, payload=alice.payload, submitted_by="bob", idempotency_key="k1"
    )

    assert pipeline.accept(alice).command.id != pipeline.accept(bob).command.id


def test_creating_a_taken_id_is_refused_at_accept_time(pipeline: CommandPipeline) -> None:
    first = pipeline.accept(submission(pipeline, "CreateShow", "k1", show_id="s1", **SHOW))
    pipeline.execute(first.command.id, 1, "worker-1")

    with pytest.raises(ResourceExistsError, match="/shows/s1"):
        pipeline.accept(submission(pipeline, "CreateShow", "k2", show_id="s1", **SHOW))


def test_a_race_of_two_creates_fails_the_loser_as_a_domain_error(
    pipeline: CommandPipeline,
) -> None:
    # Both are accepted before either runs, so the conflict is only known at run time.
    first = pipeline.accept(submission(pipeline, "CreateShow", "k1", show_id="s1", **SHOW))
    second = pipeline.accept(submission(pipeline, "CreateShow", "k2", show_id="s1", **SHOW))

    assert pipeline.execute(first.command.id, 1, "w") is Outcome.SUCCEEDED
    assert pipeline.execute(second.command.id, 1, "w") is Outcome.FAILED
    failed = pipeline.get_command(second.command.id)
    assert failed is not None
    assert failed.error is not None
    assert failed.error["type"] == "ShowExistsError"
    assert failed.error["category"] == "conflict"


def test_a_domain_error_fails_the_command_once_without_retry(
    pipeline: CommandPipeline,
) -> None:
    acceptance = pipeline.accept(submission(pipeline, "CancelShow", show_id="nope"))

    assert pipeline.execute(acceptance.command.id, 1, "w") is Outcome.FAILED
    command = pipeline.get_command(acceptance.command.id)
    assert command is not None
    assert command.status == "failed"
    assert len(command.attempts) == 1
    assert command.error is not None
    assert command.error["category"] == "not_found"
    assert "traceback" not in command.error
    # A redelivery of the message does nothing.
    assert pipeline.execute(acceptance.command.id, 1, "w") is Outcome.SKIPPED


def test_technical_errors_retry_then_dead_letter_with_every_attempt(
    pipeline: CommandPipeline, tmp_path: Path
) -> None:
    acceptance = pipeline.accept(
        submission(
            pipeline, "Flaky", key="t", failures=99, attempts_file=str(tmp_path / "attempts")
        )
    )
    command_id = acceptance.command.id

    assert pipeline.execute(command_id, 1, "w1") is Outcome.RETRY_SCHEDULED
    assert pipeline.execute(command_id, 2, "w2") is Outcome.RETRY_SCHEDULED
    assert pipeline.execute(command_id, 3, "w3") is Outcome.DEAD_LETTERED

    command = pipeline.get_command(command_id)
    assert command is not None
    assert command.status == "dead_lettered"
    assert [a["worker"] for a in command.attempts] == ["w1", "w2", "w3"]
    assert all(a["error"]["type"] == "ConnectionError" for a in command.attempts)
    assert all("Traceback" in a["error"]["traceback"] for a in command.attempts)


def test_a_retried_command_can_succeed_and_a_redrive_restores_attempts(
    pipeline: CommandPipeline, app: BoxofficeApplication, tmp_path: Path
) -> None:
    acceptance = pipeline.accept(
        submission(pipeline, "Flaky", key="t", failures=3, attempts_file=str(tmp_path / "n"))
    )
    command_id = acceptance.command.id
    for attempt in (1, 2, 3):
        pipeline.execute(command_id, attempt, "w")

    pipeline.redrive(command_id, by="ops", reason="gateway back")

    assert pipeline.execute(command_id, 4, "w") is Outcome.SUCCEEDED
    tally: Tally = app.repository.get(Tally.create_id("t"))
    assert tally.count == 1


def test_a_duplicate_delivery_executes_the_command_once(
    pipeline: CommandPipeline, app: BoxofficeApplication
) -> None:
    acceptance = pipeline.accept(submission(pipeline, "Bump", key="t"))

    assert pipeline.execute(acceptance.command.id, 1, "w1") is Outcome.SUCCEEDED
    assert pipeline.execute(acceptance.command.id, 1, "w2") is Outcome.SKIPPED

    assert app.repository.get(Tally.create_id("t")).count == 1


def test_a_version_conflict_on_the_aggregate_is_technical_and_saves_nothing(
    pipeline: CommandPipeline, app: BoxofficeApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = pipeline.accept(submission(pipeline, "Bump", key="t"))
    pipeline.execute(seed.command.id, 1, "w")
    acceptance = pipeline.accept(submission(pipeline, "Bump", key="t"))
    original_get = UnitOfWork.get

    def get_then_interleave(self: UnitOfWork, cls: type[Any], aggregate_id: UUID) -> Any:
        # Another worker bumps the tally after this one loaded it.
        loaded = original_get(self, cls, aggregate_id)
        rival: Tally = app.repository.get(aggregate_id)
        rival.bump()
        app.save(rival)
        return loaded

    monkeypatch.setattr(UnitOfWork, "get", get_then_interleave)
    outcome = pipeline.execute(acceptance.command.id, 1, "w")

    assert outcome is Outcome.RETRY_SCHEDULED
    command = pipeline.get_command(acceptance.command.id)
    assert command is not None
    assert command.error is not None
    assert command.error["type"] == "IntegrityError"
    # Neither this attempt's bump nor a success was recorded: only the rival's bump.
    assert app.repository.get(Tally.create_id("t")).count == 2
    assert "CommandSucceeded" not in topics(app, acceptance.command.id)

    monkeypatch.undo()
    assert pipeline.execute(acceptance.command.id, 2, "w") is Outcome.SUCCEEDED
    assert app.repository.get(Tally.create_id("t")).count == 3


def test_a_concurrent_start_of_the_same_attempt_runs_only_once(
    pipeline: CommandPipeline, app: BoxofficeApplication
) -> None:
    acceptance = pipeline.accept(submission(pipeline, "Bump", key="t"))
    # A second delivery, reading the same state, loses the race to record its start.
    stale = pipeline.get_command(acceptance.command.id)
    assert stale is not None
    pipeline.execute(acceptance.command.id, 1, "w1")
    stale.start("w2")

    with pytest.raises(IntegrityError):
        app.save(stale)
    assert app.repository.get(Tally.create_id("t")).count == 1


def interleave_once(monkeypatch: pytest.MonkeyPatch, rival: Any) -> None:
    """Run ``rival()`` once, inside the first handler that loads an aggregate: as if
    another worker ran while this one was mid-command."""
    original_exists = UnitOfWork.exists
    ran: list[bool] = []

    def exists_then_interleave(self: UnitOfWork, aggregate_id: UUID) -> bool:
        found = original_exists(self, aggregate_id)
        if not ran:
            ran.append(True)
            rival()
        return found

    monkeypatch.setattr(UnitOfWork, "exists", exists_then_interleave)


def test_two_first_deliveries_running_at_once_apply_the_command_once(
    pipeline: CommandPipeline, app: BoxofficeApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The relay published twice (it crashed before tracking): neither delivery is a
    # redelivery, so neither takes a lease, and both run the handler.
    acceptance = pipeline.accept(submission(pipeline, "Bump", key="t"))
    command_id = acceptance.command.id
    rival: list[Outcome] = []
    interleave_once(monkeypatch, lambda: rival.append(pipeline.execute(command_id, 1, "w2")))

    outcome = pipeline.execute(command_id, 1, "w1")

    assert rival == [Outcome.SUCCEEDED]
    assert outcome is Outcome.SKIPPED
    command = pipeline.get_command(command_id)
    assert command is not None
    assert [(a["worker"], a["outcome"]) for a in command.attempts] == [("w2", "succeeded")]
    assert topics(app, command_id) == ["CommandAccepted", "CommandSucceeded"]
    assert app.repository.get(Tally.create_id("t")).count == 1


def test_a_run_without_a_lease_records_nothing_once_a_redelivery_took_the_lease(
    pipeline: CommandPipeline, app: BoxofficeApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    # w1 runs the first delivery; meanwhile the broker, having lost w1's channel,
    # redelivers the message to w2, which takes the lease and is still running.
    acceptance = pipeline.accept(submission(pipeline, "Bump", key="t"))
    command_id = acceptance.command.id

    def lease_taken() -> None:
        command = pipeline.get_command(command_id)
        assert command is not None
        assert command.should_run(1, redelivered=True)
        command.start("w2")
        app.save(command)

    interleave_once(monkeypatch, lease_taken)

    assert pipeline.execute(command_id, 1, "w1") is Outcome.SKIPPED
    command = pipeline.get_command(command_id)
    assert command is not None
    assert command.status == "running"
    assert [(a["worker"], a["outcome"]) for a in command.attempts] == [("w2", None)]
    assert Tally.create_id("t") not in app.repository


def test_attempts_without_a_lease_spend_the_budget_of_retries(
    pipeline: CommandPipeline, app: BoxofficeApplication, tmp_path: Path
) -> None:
    failing = submission(
        pipeline, "Flaky", key="t", failures=10, attempts_file=str(tmp_path / "attempts")
    )
    command_id = pipeline.accept(failing).command.id

    outcomes = [pipeline.execute(command_id, n, f"w{n}") for n in (1, 2, 3)]

    assert outcomes == [Outcome.RETRY_SCHEDULED, Outcome.RETRY_SCHEDULED, Outcome.DEAD_LETTERED]
    assert "CommandStarted" not in topics(app, command_id)
    command = pipeline.get_command(command_id)
    assert command is not None
    assert [(a["attempt"], a["worker"]) for a in command.attempts] == [
        (1, "w1"),
        (2, "w2"),
        (3, "w3"),
    ]


def test_when_every_attempt_is_lost_with_its_worker_the_command_is_dead_lettered(
    pipeline: CommandPipeline, app: BoxofficeApplication
) -> None:
    acceptance = pipeline.accept(submission(pipeline, "Bump", key="t"))
    command = pipeline.get_command(acceptance.command.id)
    assert isinstance(command, Command)
    for worker in ("w1", "w2", "w3"):  # each start is followed by a crash
        command.start(worker)
    app.save(command)

    assert pipeline.execute(acceptance.command.id, 3, "w4", redelivered=True) is (
        Outcome.DEAD_LETTERED
    )
    dead = pipeline.get_command(acceptance.command.id)
    assert dead is not None
    assert dead.error is not None
    assert dead.error["type"] == "WorkerLost"


def test_a_fresh_duplicate_of_a_running_attempt_is_skipped_but_a_redelivery_takes_over(
    pipeline: CommandPipeline, app: BoxofficeApplication
) -> None:
    acceptance = pipeline.accept(submission(pipeline, "Bump", key="t"))
    command_id = acceptance.command.id
    running = pipeline.get_command(command_id)
    assert running is not None
    running.start("w1")  # w1 runs attempt 1 (and, as it turns out, dies)
    app.save(running)

    # The relay publishing again is no reason to take the command from w1...
    assert pipeline.execute(command_id, 1, "w2") is Outcome.SKIPPED
    # ...but the broker redelivering w1's unacknowledged message is.
    assert pipeline.execute(command_id, 1, "w3", redelivered=True) is Outcome.SUCCEEDED

    command = pipeline.get_command(command_id)
    assert command is not None
    assert [(a["worker"], a["outcome"]) for a in command.attempts] == [
        ("w1", "lost"),
        ("w3", "succeeded"),
    ]
    tally: Tally = app.repository.get(Tally.create_id("t"))
    assert tally.count == 1


def test_a_worker_that_does_not_know_the_type_strands_nothing(
    pipeline: CommandPipeline, app: BoxofficeApplication
) -> None:
    # The web knows Bump; this worker was started with other COMMAND_MODULES.
    acceptance = pipeline.accept(submission(pipeline, "Bump", key="t"))
    known_elsewhere = CommandPipeline(app, build_catalog(), pipeline.retry)
    command_id = acceptance.command.id

    outcomes = [known_elsewhere.execute(command_id, attempt, "w") for attempt in (1, 2, 3)]

    # Every attempt ends, with an error that says what to fix; after the budget the
    # command waits for a re-drive (a worker that knows it may then run it).
    assert outcomes == [Outcome.RETRY_SCHEDULED, Outcome.RETRY_SCHEDULED, Outcome.DEAD_LETTERED]
    command = pipeline.get_command(command_id)
    assert command is not None
    assert command.status == "dead_lettered"
    assert command.error is not None
    assert command.error["type"] == "UnknownCommandError"
    assert "COMMAND_MODULES" in command.error["message"]
    pipeline.redrive(command_id, by="ops", reason="workers restarted with the module")
    assert pipeline.execute(command_id, 4, "w") is Outcome.SUCCEEDED
