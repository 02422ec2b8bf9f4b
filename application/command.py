"""The Command aggregate: one per accepted command, its events are the command's life.

Its id is the command id. Optimistic concurrency on it is what makes execution
exactly-once in effect: two runs of one command cannot both record an outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from eventsourcing.domain import Aggregate, event

Status = Literal["accepted", "running", "retrying", "succeeded", "failed", "dead_lettered"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "dead_lettered"})


class CommandEvent(Aggregate.Event):
    """Base of the Command's events after the first.

    eventsourcing stamps ``modified_on`` after the event's method body has run; the
    Command stamps it first, so its history and attempts carry each event's own time.
    """

    def mutate(self, aggregate: Any) -> Any:
        if aggregate is not None and aggregate.id == self.originator_id:
            aggregate.modified_on = self.timestamp
        return super().mutate(aggregate)


@dataclass(frozen=True)
class Attempt:
    """One run of a command: its number, its worker, and when it began if it runs
    without a lease (None: its ``CommandStarted`` is recorded)."""

    number: int
    worker: str
    started_at: datetime | None
    traceparent: str | None = None
    # When its message was published and when a worker received it (ISO 8601).
    delivered: dict[str, str] | None = None

    @property
    def with_outcome(self) -> dict[str, Any]:
        """What the outcome event records of the run: its start if it ran without a
        lease, and its span (the trace the command's next steps continue)."""
        recorded: dict[str, Any] = {}
        if self.started_at is not None:
            recorded.update(worker=self.worker, started_at=self.started_at)
        if self.traceparent is not None:
            recorded.update(traceparent=self.traceparent)
        if self.delivered:
            recorded.update(delivered=self.delivered)
        return recorded


# The category of the error recorded for an attempt whose save lost a version conflict.
VERSION_CONFLICT = "version_conflict"


class Command(Aggregate):
    """The record of one command from acceptance to its final outcome."""

    class CommandAccepted(Aggregate.Created):
        """The command was validated and durably recorded; it is due to run."""

        command_type: str
        aggregate_id: UUID
        resource: str
        payload: dict[str, Any]
        fingerprint: str
        correlation_id: UUID
        causation_id: str | None
        submitted_by: str
        idempotency_key: str | None
        callback_url: str | None = None
        owner: str | None = None
        # The span of the accept (W3C traceparent), when traced; None in earlier events.
        traceparent: str | None = None

    class CommandStarted(CommandEvent):
        """A worker started an attempt (the previous one was lost if it never ended)."""

        attempt: int
        worker: str
        previous_run_lost: bool

    class CommandSucceeded(CommandEvent):
        """The handler ran; its domain events were saved in the same transaction.

        The outcomes of an attempt that ran without a lease (see :meth:`Command.begin`)
        also say who ran it (``worker``) and when it began (``started_at``).
        """

        attempt: int
        worker: str | None = None
        started_at: datetime | None = None
        traceparent: str | None = None
        # When the run's message was published and received: None in earlier events.
        delivered: dict[str, str] | None = None

    class CommandFailed(CommandEvent):
        """A domain error: final."""

        attempt: int
        error: dict[str, Any]
        worker: str | None = None
        started_at: datetime | None = None
        traceparent: str | None = None
        # When the run's message was published and received: None in earlier events.
        delivered: dict[str, str] | None = None

    class CommandRetryScheduled(CommandEvent):
        """A technical error; the next attempt is due at ``retry_at``."""

        attempt: int
        error: dict[str, Any]
        retry_at: datetime
        worker: str | None = None
        started_at: datetime | None = None
        traceparent: str | None = None
        # When the run's message was published and received: None in earlier events.
        delivered: dict[str, str] | None = None

    class CommandDeadLettered(CommandEvent):
        """Every attempt failed technically; waiting for a re-drive."""

        attempt: int
        error: dict[str, Any]
        worker: str | None = None
        started_at: datetime | None = None
        traceparent: str | None = None
        # When the run's message was published and received: None in earlier events.
        delivered: dict[str, str] | None = None

    class CommandRedriven(CommandEvent):
        """An operator gave the command new attempts, starting at ``next_attempt``, after
        the ``failed_attempts`` of its last budget (None in events recorded before they
        were kept)."""

        by: str
        reason: str
        next_attempt: int
        failed_attempts: list[int] | None = None

    @event(CommandAccepted)
    def __init__(
        self,
        id: UUID,
        command_type: str,
        aggregate_id: UUID,
        resource: str,
        payload: dict[str, Any],
        fingerprint: str,
        correlation_id: UUID,
        causation_id: str | None,
        submitted_by: str,
        idempotency_key: str | None,
        callback_url: str | None = None,
        owner: str | None = None,
        traceparent: str | None = None,
    ) -> None:
        self.command_type = command_type
        self.aggregate_id = aggregate_id
        self.resource = resource
        self.payload = payload
        self.fingerprint = fingerprint
        self.correlation_id = correlation_id
        self.causation_id = causation_id
        self.submitted_by = submitted_by
        self.idempotency_key = idempotency_key
        self.callback_url = callback_url
        self.owner = owner
        self.traceparent = traceparent
        self.status: Status = "accepted"
        self.attempt = 0
        self.budget_start = 0
        self.attempts: list[dict[str, Any]] = []
        self.error: dict[str, Any] | None = None
        self.retry_at: datetime | None = None
        self.history: list[dict[str, Any]] = []
        self._add_history("accepted", "web", None)

    @property
    def client(self) -> str:
        """The client on whose behalf the command runs: who submitted it, or for a
        command a saga issued, the client whose process the saga runs."""
        return self.owner or self.submitted_by

    @property
    def trace_id(self) -> str | None:
        """The trace that follows the command (the 32 hex digits of the W3C
        ``traceparent`` its accept recorded), None when it was not traced."""
        parts = (self.traceparent or "").split("-")
        return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None

    @property
    def is_terminal(self) -> bool:
        """True once the command succeeded, failed or was dead-lettered."""
        return self.status in TERMINAL

    @property
    def attempts_in_budget(self) -> int:
        """Attempts made since acceptance or the last re-drive."""
        return self.attempt - self.budget_start

    @property
    def conflicts_in_budget(self) -> int:
        """Attempts since acceptance or the last re-drive that lost a version conflict:
        another command changed an aggregate this one had decided on."""
        return sum(
            1
            for run in self.attempts
            if run["attempt"] > self.budget_start
            and (run.get("error") or {}).get("category") == VERSION_CONFLICT
        )

    @property
    def failures_in_budget(self) -> int:
        """Attempts in the budget that did not merely lose a version conflict."""
        return self.attempts_in_budget - self.conflicts_in_budget

    def should_run(self, attempt: int, redelivered: bool = False) -> bool:
        """Whether a delivery for ``attempt`` should run now.

        A pending command runs its next attempt. A running command whose current attempt
        the broker *redelivers* lost its worker (the broker only redelivers a message
        whose consumer went away), so it runs again as a new attempt; the same attempt
        delivered afresh is a duplicate publish while the run goes on. Everything else
        is a stale duplicate.
        """
        if self.status in ("accepted", "retrying"):
            return attempt == self.attempt + 1
        if self.status == "running":
            return redelivered and attempt == self.attempt
        return False

    def start(
        self,
        worker: str,
        traceparent: str | None = None,
        delivered: dict[str, str] | None = None,
    ) -> Attempt:
        """Record that ``worker`` starts the next attempt (its lease); returns it."""
        lost = self.status == "running"
        self._started(attempt=self.attempt + 1, worker=worker, previous_run_lost=lost)
        return Attempt(self.attempt, worker, None, traceparent, delivered)

    def begin(
        self,
        worker: str,
        at: datetime,
        traceparent: str | None = None,
        delivered: dict[str, str] | None = None,
    ) -> Attempt:
        """The next attempt, run by ``worker`` from ``at`` without a lease: nothing is
        recorded until its outcome, which records the attempt with it. A run lost
        before then goes uncounted; the broker's redelivery of its message takes the
        lease (:meth:`start`), so that every later loss counts against the budget."""
        return Attempt(self.attempt + 1, worker, at, traceparent, delivered)

    def is_current(self, run: Attempt, version: int) -> bool:
        """Whether ``run`` may still record its outcome: a leased run while it is the
        command's attempt, a run without a lease while the command is unchanged since
        ``version`` (at which the run began)."""
        if self.is_terminal:
            return False
        if run.started_at is None:
            return self.attempt == run.number
        return self.version == version

    @event(CommandStarted)
    def _started(self, attempt: int, worker: str, previous_run_lost: bool) -> None:
        if previous_run_lost and self.attempts:
            self.attempts[-1].update(
                ended_at=self.modified_on.isoformat(),
                outcome="lost",
                error={"type": "WorkerLost", "message": "the worker stopped mid-command"},
            )
        self.status = "running"
        self._open_attempt(attempt, worker, self.modified_on)

    def _open_attempt(self, attempt: int, worker: str, at: datetime) -> None:
        self.attempt = attempt
        self.retry_at = None
        self.attempts.append(
            {
                "attempt": attempt,
                "started_at": at.isoformat(),
                "ended_at": None,
                "worker": worker,
                "outcome": None,
                "error": None,
            }
        )
        self._add_history("running", worker, f"attempt {attempt}", at)

    def _began(self, attempt: int, worker: str | None, started_at: datetime | None) -> None:
        """The start of an attempt that ran without a lease, recorded with its outcome."""
        if started_at is not None:
            self._open_attempt(attempt, worker or "worker", started_at)

    @event(CommandSucceeded)
    def succeed(
        self,
        attempt: int,
        worker: str | None = None,
        started_at: datetime | None = None,
        traceparent: str | None = None,
        delivered: dict[str, str] | None = None,
    ) -> None:
        """Record success; saved in one transaction with the command's domain events."""
        self._began(attempt, worker, started_at)
        self.status = "succeeded"
        self.error = None
        self._end_attempt(attempt, "succeeded", None, delivered)
        self._add_history("succeeded", self._worker(attempt), None)

    @event(CommandFailed)
    def fail(
        self,
        attempt: int,
        error: dict[str, Any],
        worker: str | None = None,
        started_at: datetime | None = None,
        traceparent: str | None = None,
        delivered: dict[str, str] | None = None,
    ) -> None:
        """Record a domain error: final, never retried."""
        self._began(attempt, worker, started_at)
        self.status = "failed"
        self.error = error
        self._end_attempt(attempt, "failed", error, delivered)
        self._add_history("failed", self._worker(attempt), error.get("message"))

    @event(CommandRetryScheduled)
    def schedule_retry(
        self,
        attempt: int,
        error: dict[str, Any],
        retry_at: datetime,
        worker: str | None = None,
        started_at: datetime | None = None,
        traceparent: str | None = None,
        delivered: dict[str, str] | None = None,
    ) -> None:
        """Record a technical error and when the next attempt is due."""
        self._began(attempt, worker, started_at)
        self.status = "retrying"
        self.error = error
        self.retry_at = retry_at
        self._end_attempt(attempt, "retry_scheduled", error, delivered)
        self._add_history(
            "retrying", self._worker(attempt), f"{error.get('type')}: retry at {retry_at}"
        )

    @event(CommandDeadLettered)
    def dead_letter(
        self,
        attempt: int,
        error: dict[str, Any],
        worker: str | None = None,
        started_at: datetime | None = None,
        traceparent: str | None = None,
        delivered: dict[str, str] | None = None,
    ) -> None:
        """Record that the attempts ran out; the command waits for a re-drive."""
        self._began(attempt, worker, started_at)
        self.status = "dead_lettered"
        self.error = error
        self._end_attempt(attempt, "dead_lettered", error, delivered)
        self._add_history("dead_lettered", self._worker(attempt), error.get("message"))

    def redrive(self, by: str, reason: str) -> None:
        """Give a dead-lettered command a fresh budget of attempts."""
        failed = [run["attempt"] for run in self.attempts if run["attempt"] > self.budget_start]
        self._redriven(by=by, reason=reason, next_attempt=self.attempt + 1, failed_attempts=failed)

    @event(CommandRedriven)
    def _redriven(
        self, by: str, reason: str, next_attempt: int, failed_attempts: list[int] | None = None
    ) -> None:
        self.status = "retrying"
        self.budget_start = self.attempt
        self.retry_at = None
        after = f" after attempts {', '.join(map(str, failed_attempts))}" if failed_attempts else ""
        self._add_history("retrying", by, f"re-driven{after}: {reason}")

    def _end_attempt(
        self,
        attempt: int,
        outcome: str,
        error: dict[str, Any] | None,
        delivered: dict[str, str] | None = None,
    ) -> None:
        for run in self.attempts:
            if run["attempt"] == attempt:
                run.update(ended_at=self.modified_on.isoformat(), outcome=outcome, error=error)
                run.update(delivered or {})

    def _worker(self, attempt: int) -> str:
        return next((str(r["worker"]) for r in self.attempts if r["attempt"] == attempt), "worker")

    def _add_history(
        self, status: str, component: str, detail: str | None, at: datetime | None = None
    ) -> None:
        self.history.append(
            {
                "status": status,
                "at": (at or self.modified_on).isoformat(),
                "component": component,
                "detail": detail,
            }
        )
