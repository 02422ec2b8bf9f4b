"""Ports the application declares and the infrastructure implements."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, Self
from uuid import UUID

from eventsourcing.persistence import Notification


class CommandTransport(Protocol):
    """Carries "run attempt N of command C" to the workers (Celery over RabbitMQ)."""

    def publish(
        self, command_id: UUID, attempt: int, eta: datetime | None = None, takeover: bool = False
    ) -> None:
        """Hand the message to the broker; returns once the broker has confirmed it.

        ``takeover`` marks a message for a command that has had no sign of life past its
        lease: it is treated as a broker redelivery (the run takes the lease first, and a
        running attempt runs again as a new attempt).
        """
        ...


class Dispatch(Protocol):
    """Sends a just-accepted command's first message from the process that accepted it,
    right after the accept committed (docs/design.md, "The outbox's contract").

    It never fails the accept (it may wait for the broker's confirm, about a
    millisecond), and may drop the message (the broker away, the process dying): the
    relay's safety net publishes every accept left unpublished.
    """

    def dispatch(self, command: Any) -> None:
        """Send ``command``'s (a :class:`~application.command.Command`, just saved)
        first message soon."""
        ...


class Undispatched:
    """The :class:`Dispatch` that sends nothing: the relay's safety net publishes every
    accept (the in-memory store, tests, tools)."""

    def dispatch(self, command: Any) -> None:
        """Send nothing."""


@dataclass(frozen=True)
class ChargeResult:
    """What the gateway answered: approved with a reference, or declined with a reason."""

    approved: bool
    reference: str | None = None
    reason: str | None = None


class PaymentGatewayUnavailableError(Exception):
    """Raised by a gateway adapter when it cannot give an answer now: the charge retries."""


class PaymentGateway(Protocol):
    """Charges and refunds cards; a repeated ``idempotency_key`` never charges twice."""

    def charge(self, idempotency_key: str, amount_cents: int, card_token: str) -> ChargeResult:
        """Charge ``amount_cents``; raises :class:`PaymentGatewayUnavailableError`."""
        ...

    def refund(self, idempotency_key: str) -> None:
        """Refund the charge made with ``idempotency_key``, if one was made and is not
        refunded yet; otherwise do nothing. Safe to call again."""
        ...


@dataclass(frozen=True)
class Services:
    """The ports command handlers may use."""

    payment_gateway: PaymentGateway
    payment_deadline: timedelta = timedelta(seconds=30)


class CallbackPolicy(Protocol):
    """Which ``Callback-Url`` a client may give: checked when the command is accepted
    (and the address again at each delivery, where it is resolved)."""

    def refusal(self, url: str) -> str | None:
        """Why ``url`` may not receive webhooks, or None when it may."""
        ...


class Subscription(Protocol):
    """The event log's notifications after a position, in order, until stopped."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *_: Any) -> None: ...

    def __iter__(self) -> Iterator[Notification]: ...

    def stop(self) -> None:
        """End the iteration; callable from any thread."""
        ...


class Subscribe(Protocol):
    """Subscribes to the log after a position (None: from the start), to some topics (or
    all). Given ``concerns``, the subscription may sleep through changes to aggregates
    whose ids (as strings) it holds false for: a follower that cares about a few
    aggregates at a time need not read the log at every write."""

    def __call__(
        self,
        gt: int | None,
        topics: Sequence[str],
        concerns: Callable[[str], bool] | None = None,
    ) -> Subscription: ...


class CommandMetrics(Protocol):
    """Counts what the pipeline does with commands (Prometheus in production:
    ``infrastructure/metrics.py``); label values are command types and outcomes, a
    bounded set."""

    def accepted(self, command_type: str) -> None:
        """A new command of ``command_type`` was recorded (not an idempotent replay)."""
        ...

    def attempted(self, command_type: str, outcome: str, since_accepted: float | None) -> None:
        """An attempt ended with ``outcome``; ``since_accepted`` is the seconds from the
        command's accept to this outcome when it is final (succeeded, failed,
        dead-lettered), None otherwise."""
        ...

    def visible(self, command_type: str, outcome: str, since_accepted: float) -> None:
        """A command's final ``outcome`` reached the registry ``since_accepted`` seconds
        after its accept: when a client polling ``GET /commands/{id}`` sees it."""
        ...


class Uncounted:
    """The :class:`CommandMetrics` that counts nothing: tests, replays, tools."""

    def accepted(self, command_type: str) -> None:
        """Count nothing."""

    def attempted(self, command_type: str, outcome: str, since_accepted: float | None) -> None:
        """Count nothing."""

    def visible(self, command_type: str, outcome: str, since_accepted: float) -> None:
        """Count nothing."""


class Tracer(Protocol):
    """Spans of a trace that follows a command through every process (OpenTelemetry in
    production: ``infrastructure/tracing.py``). A span's context travels as a W3C
    ``traceparent`` (``00-<trace id>-<span id>-<flags>``): recorded with a command's
    events, it is how the next process continues the trace."""

    def span(
        self, name: str, parent: str | None = None, *, kind: str = "internal", **attributes: str
    ) -> AbstractContextManager[None]:
        """A span around the block: a child of the span current here, or when none is
        (a follower's batch of several traces, a worker's run of a message), of
        ``parent`` (a traceparent). ``kind`` is OpenTelemetry's, by name: ``consumer``
        for the run of a message."""
        ...

    def current(self) -> str | None:
        """The traceparent of the span current here; None outside a trace."""
        ...


class Untraced:
    """The :class:`Tracer` that traces nothing: tracing off (the default), tests, replays."""

    def span(
        self, name: str, parent: str | None = None, *, kind: str = "internal", **attributes: str
    ) -> AbstractContextManager[None]:
        """No span."""
        return nullcontext()

    def current(self) -> str | None:
        """Never in a trace."""
        return None
