"""The command pipeline: accept a command durably, then execute it exactly once in effect.

Generic: it knows command types only through the :class:`CommandCatalog`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Notification

from application import log_context
from application.catalog import CommandCatalog
from application.command import VERSION_CONFLICT, Attempt, Command
from application.event_log import AggregatePresentError, BoxofficeApplication
from application.failures import conflict_error, domain_error, technical_error, worker_lost_error
from application.ports import (
    CommandMetrics,
    Dispatch,
    Services,
    Tracer,
    Uncounted,
    Undispatched,
    Untraced,
)
from application.retry import RetryPolicy
from application.submission import (
    Acceptance,
    IdempotencyKeyReusedError,
    ResourceExistsError,
    Submission,
)
from application.unit_of_work import UnitOfWork, find_aggregate
from domain.errors import DomainError, NotFoundError

logger = logging.getLogger(__name__)


class Outcome(Enum):
    """What one delivery of a command message did."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRY_SCHEDULED = "retry_scheduled"
    DEAD_LETTERED = "dead_lettered"
    SKIPPED = "skipped"


# The outcomes that decide a command: its accept-to-outcome time is measured at them.
FINAL = frozenset({Outcome.SUCCEEDED, Outcome.FAILED, Outcome.DEAD_LETTERED})


class CommandPipeline:
    """Accepts commands (web side) and executes them (worker side)."""

    def __init__(
        self,
        app: BoxofficeApplication,
        catalog: CommandCatalog,
        retry: RetryPolicy,
        services: Services | None = None,
        metrics: CommandMetrics | None = None,
        tracer: Tracer | None = None,
        dispatcher: Dispatch | None = None,
    ) -> None:
        self.app = app
        self.catalog = catalog
        self.retry = retry
        self.services = services
        self.metrics: CommandMetrics = metrics or Uncounted()
        self.tracer: Tracer = tracer or Untraced()
        self.dispatcher: Dispatch = dispatcher or Undispatched()

    def accept(self, submission: Submission) -> Acceptance:
        """Record ``CommandAccepted`` durably, or return the earlier acceptance of the key.

        Raises :class:`IdempotencyKeyReusedError` for a key reused with another command,
        :class:`ResourceExistsError` when a create targets a taken id, and the event
        store's errors when it cannot be reached (nothing is then recorded).
        """
        command_id = submission.command_id()
        with self.tracer.span(f"accept {submission.spec.name}", command_id=str(command_id)):
            command = self.prepare(submission, command_id)
            with log_context.bound(**log_context.of_command(command)):
                return self._accept_logged(submission, command)

    def _accept_logged(self, submission: Submission, command: Command) -> Acceptance:
        acceptance = self._accept(submission, command)
        if not acceptance.replayed:
            self.saved(command)
        logger.info(
            "%s %s for %s",
            "answered as accepted before:" if acceptance.replayed else "accepted",
            command.command_type,
            command.resource,
        )
        return acceptance

    def saved(self, command: Command) -> None:
        """``command`` was just accepted, its ``CommandAccepted`` committed (by a client's
        request, or with a saga's decision): send its first message from here, a hop
        fewer than the relay, and count it."""
        self.dispatcher.dispatch(command)
        self.metrics.accepted(command.command_type)

    def _accept(self, submission: Submission, command: Command) -> Acceptance:
        command_id = command.id
        spec = submission.spec
        try:
            # Written first, looked up only if the key is taken: a new command (the
            # usual case) costs the store one round trip, not two. A create's target
            # must have no events yet, which the write itself checks. The accepts in
            # flight in this process commit together.
            recordings = self.app.save(
                command,
                absent=spec.target(submission.payload) if spec.creates else None,
                grouped=True,
            )
        except AggregatePresentError:
            # Perhaps made by this very command, accepted before: answered as then.
            earlier = self._earlier(command_id, submission)
            if earlier is not None:
                return earlier
            raise ResourceExistsError(spec.resource_of(submission.payload)) from None
        except IntegrityError:
            # The key was accepted before, by an earlier request or a racing one:
            # answer as it was answered.
            earlier = self._earlier(command_id, submission)
            if earlier is None:
                raise
            return earlier
        position = recordings[-1].notification.id if recordings else None
        return Acceptance(command=command, position=position, replayed=False)

    def prepare(self, submission: Submission, command_id: UUID | None = None) -> Command:
        """The ``Command`` for ``submission``, not yet saved (a saga saves it with its decision)."""
        spec = submission.spec
        command_id = command_id or submission.command_id()
        correlation = submission.correlation_id
        if correlation is None and spec.correlate is not None:
            correlation = spec.correlate(submission.payload)
        return Command(
            id=command_id,
            command_type=spec.name,
            aggregate_id=spec.target(submission.payload),
            resource=spec.resource_of(submission.payload),
            payload=submission.payload.model_dump(mode="json"),
            fingerprint=submission.fingerprint,
            correlation_id=correlation or command_id,
            causation_id=submission.causation_id,
            submitted_by=submission.submitted_by,
            idempotency_key=submission.idempotency_key,
            callback_url=submission.callback_url,
            owner=submission.owner,
            # The span that accepts it: the relay, the worker and the command's own
            # consequences (a saga's next commands) continue its trace.
            traceparent=self.tracer.current(),
        )

    def get_command(self, command_id: UUID) -> Command | None:
        """The command with this id, or None when none was ever accepted."""
        command = find_aggregate(self.app, command_id)
        return command if isinstance(command, Command) else None

    def advanced(
        self, command: Command, seen: Sequence[Notification]
    ) -> tuple[Command, int] | None:
        """``command`` (changed in place) with ``seen``, its events read from the log
        after it, applied, and the position of the last; None when they do not carry it
        further without a gap (then read it again)."""
        position = None
        for notification in seen:
            if notification.originator_version <= command.version:
                continue
            if notification.originator_version != command.version + 1:
                return None
            event = self.app.mapper.to_domain_event(notification)
            if not isinstance(event, Command.Event):
                return None
            event.mutate(command)
            position = notification.id
        return None if position is None else (command, position)

    def execute(
        self,
        command_id: UUID,
        attempt: int,
        worker: str,
        redelivered: bool = False,
        delivered: dict[str, str] | None = None,
        traceparent: str | None = None,
    ) -> Outcome:
        """Run one delivery of a command message.

        ``redelivered`` is the broker's flag for a message whose earlier consumer went
        away without acknowledging it; ``delivered`` says when the message was published
        and received (``published_at``, ``received_at``), recorded with the outcome;
        ``traceparent`` is the span the message was published under, which the run's
        span continues.

        A delivery that finds the command decided, or another run ahead of it, does
        nothing. Otherwise the handler runs and its aggregates are saved together with
        ``CommandSucceeded`` in one transaction; a domain error records
        ``CommandFailed``; any other error schedules a retry or dead-letters.
        """
        command = self.get_command(command_id)
        if command is None:
            logger.info("attempt %d of command %s: skipped (no such command)", attempt, command_id)
            return Outcome.SKIPPED
        with (
            log_context.bound(**log_context.of_command(command)),
            self.tracer.span(
                f"run {command.command_type}", traceparent, kind="consumer", attempt=str(attempt)
            ),
        ):
            outcome = self._execute(command, attempt, worker, redelivered, delivered)
            logger.info("attempt %d of %s: %s", attempt, command.command_type, outcome.value)
        since_accepted = None
        if outcome in FINAL:
            since_accepted = (datetime.now(UTC) - command.created_on).total_seconds()
        self.metrics.attempted(command.command_type, outcome.value, since_accepted)
        return outcome

    def _execute(
        self,
        command: Command,
        attempt: int,
        worker: str,
        redelivered: bool,
        delivered: dict[str, str] | None,
    ) -> Outcome:
        command_id = command.id
        if not command.should_run(attempt, redelivered):
            return Outcome.SKIPPED
        began = command.version
        if self.retry.exhausted(command.failures_in_budget):
            # Every attempt of the budget was lost with its worker.
            lost = worker_lost_error(worker)
            last = Attempt(command.attempt, worker, None)
            return self._record(command_id, last, began, lost, Outcome.DEAD_LETTERED)
        if redelivered:
            # Delivered before: a run of it may have been lost with its worker. This
            # run takes the lease first, so that its own loss would be counted.
            run = command.start(worker, self.tracer.current(), delivered)
            try:
                self.app.save(command)
            except IntegrityError:
                return Outcome.SKIPPED  # a concurrent delivery started this attempt first
        else:
            # The first delivery runs at once: its outcome records its start, one
            # write fewer per command. A concurrent duplicate may run too; only one
            # outcome is recorded (optimistic concurrency on the command).
            run = command.begin(worker, datetime.now(UTC), self.tracer.current(), delivered)
        uow = UnitOfWork(self.app, self.services, client=command.client)
        try:
            # Inside the try: a worker started without the command's module records a
            # technical error (retried, then dead-lettered) instead of leaving it running.
            spec = self.catalog.get(command.command_type)
            if not spec.creates:
                _require_owned_by(uow, command)
            spec.run(uow, command.payload)
            command.succeed(run.number, **run.with_outcome)
            self.app.save(*uow.aggregates, command)
        except IntegrityError as error:
            # Another command changed an aggregate this one decided on (decide again),
            # or another run of this command recorded first (then skipped below).
            conflict = conflict_error(error, worker)
            outcome = self._record(command_id, run, began, conflict, Outcome.RETRY_SCHEDULED)
        except DomainError as error:
            failure = domain_error(error, worker)
            outcome = self._record(command_id, run, began, failure, Outcome.FAILED)
        except Exception as error:  # noqa: BLE001 - every other error is technical: retried
            logger.warning("command %s attempt %d failed: %r", command_id, run.number, error)
            failure = technical_error(error, worker)
            outcome = self._record(command_id, run, began, failure, Outcome.RETRY_SCHEDULED)
        else:
            return Outcome.SUCCEEDED
        if outcome is Outcome.SKIPPED:
            self._after_lost(command)
        return outcome

    def _after_lost(self, command: Command) -> None:
        """This attempt's outcome was not recorded (another attempt decided the command):
        let the command undo what it may have done outside the event store."""
        spec = self.catalog.get(command.command_type)
        if spec.after_lost is None:
            return
        uow = UnitOfWork(self.app, self.services, client=command.client)
        try:
            spec.after_lost(uow, spec.payload.model_validate(command.payload))
        except Exception:
            logger.exception("command %s: undoing a lost attempt failed", command.id)

    def _record(
        self, command_id: UUID, run: Attempt, began: int, error: dict[str, Any], outcome: Outcome
    ) -> Outcome:
        """Record ``outcome`` of ``run`` (which began at the command's version ``began``);
        a retry past the budget dead-letters."""
        # Reload: the in-memory command may hold an outcome whose save failed.
        command = self.get_command(command_id)
        if command is None or not command.is_current(run, began):
            return Outcome.SKIPPED
        # A run without a lease is not among the recorded attempts yet: count it too.
        tries = command.failures_in_budget + (run.started_at is not None)
        if outcome is Outcome.RETRY_SCHEDULED:
            if error.get("category") == VERSION_CONFLICT:
                tries = command.conflicts_in_budget + 1  # this one too
                out_of_budget = tries >= self.retry.max_conflicts
            else:
                out_of_budget = self.retry.exhausted(tries)
            if out_of_budget:
                outcome = Outcome.DEAD_LETTERED
        start = run.with_outcome
        if outcome is Outcome.FAILED:
            command.fail(run.number, error, **start)
        elif outcome is Outcome.DEAD_LETTERED:
            command.dead_letter(run.number, error, **start)
        else:
            delay = timedelta(seconds=self.retry.delay(tries))
            command.schedule_retry(run.number, error, datetime.now(UTC) + delay, **start)
        try:
            self.app.save(command)
        except IntegrityError:
            return Outcome.SKIPPED
        return outcome

    def redrive(self, command_id: UUID, by: str, reason: str) -> Command:
        """Give a dead-lettered command a fresh budget of attempts."""
        command = self.get_command(command_id)
        if command is None or command.status != "dead_lettered":
            raise ValueError(f"command {command_id} is not dead-lettered")
        command.redrive(by=by, reason=reason)
        self.app.save(command)
        return command

    def _earlier(self, command_id: UUID, submission: Submission) -> Acceptance | None:
        earlier = self.get_command(command_id)
        if earlier is None:
            return None
        if earlier.fingerprint != submission.fingerprint:
            raise IdempotencyKeyReusedError(submission.idempotency_key)
        return Acceptance(command=earlier, position=None, replayed=True)


def _require_owned_by(uow: UnitOfWork, command: Command) -> None:
    """A command acts only on a target its client owns (an aggregate's ``owner``); another
    client's target is reported as missing, so that its existence does not leak."""
    owner = getattr(uow.load(command.aggregate_id), "owner", None)
    if owner is not None and owner != command.client:
        raise NotFoundError(f"{command.resource} does not exist")
