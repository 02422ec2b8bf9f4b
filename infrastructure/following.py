"""Following the event log: the loop every follower (projections, relay, sagas) runs.

Each follower runs from its own tracked position. An error (the database restarting,
the broker gone) is logged and the follower resumes from its tracked position after a
pause that grows while the error persists: the effect and the position are written
together, or the effect is idempotent, so nothing is applied twice or skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from eventsourcing.application import Application
from eventsourcing.persistence import Notification, Tracking
from eventsourcing.utils import get_topic

from application.command import Command
from application.retry import Backoff
from application.segment import WHOLE
from infrastructure import tracing
from infrastructure.lease import LeaseLostError
from infrastructure.stall_log import StallLog
from infrastructure.subscription import subscribe

logger = logging.getLogger(__name__)
# The topics of a command's events, which record the span of the part that wrote them.
COMMAND_TOPICS = get_topic(Command) + "."


class Follower(Protocol):
    """Something that processes events of some topics, tracking its position in ``view``."""

    name: str

    @property
    def view(self) -> Any: ...

    def event_topics(self) -> tuple[str, ...]: ...

    def process_event(self, domain_event: Any, tracking: Tracking) -> None: ...


class EventNotAppliedError(Exception):
    """Raised when a follower fails on one event: it says which, and why."""

    def __init__(self, name: str, position: int, error: Exception) -> None:
        super().__init__(f"{name} could not apply the event at position {position}: {error!r}")
        self.name = name
        self.position = position
        self.error = error


def follow_until_stopped(
    app: Application[Any],
    follower: Follower,
    stop: threading.Event,
    retry_after: float = 1.0,
    max_retry_after: float = 30.0,
    stalls: StallLog | None = None,
) -> None:
    """:func:`follow`, resumed from the tracked position after any error, until ``stop``.

    The pause doubles from ``retry_after`` up to ``max_retry_after`` while the error
    persists, and starts again from ``retry_after`` once following lasted longer than
    the longest pause (the dependency came back). An event the follower fails on is
    logged as an error with its position and recorded in ``stalls`` until one applies.
    """
    backoff = Backoff(retry_after, max_retry_after)
    stalled = False

    def applied(position: int) -> None:
        nonlocal stalled
        if stalled and stalls is not None:
            stalls.clear(follower.name)
        stalled = False

    while not stop.is_set():
        started = time.monotonic()
        try:
            follow(app, follower, stop, applied)
        except LeaseLostError as lost:
            # Its lease's term is over (``stop`` is set with it): nothing to retry here.
            logger.warning("%s stopped: %s", follower.name, lost)
            stop.wait(retry_after)
        except Exception as error:  # every failure is retried, and logged
            pause = backoff.after_failure(time.monotonic() - started)
            if isinstance(error, EventNotAppliedError):
                stalled = True
                _record_stall(stalls, error)
            logger.log(
                logging.ERROR if isinstance(error, EventNotAppliedError) else logging.WARNING,
                "%s stopped: %s; resuming from its tracked position in %.1f s",
                follower.name,
                error,
                pause,
                # The first failure of a streak with its traceback, the rest in one line.
                exc_info=backoff.streak == 1,
            )
            stop.wait(pause)


def _record_stall(stalls: StallLog | None, error: EventNotAppliedError) -> None:
    if stalls is None:
        return
    try:
        stalls.record(error.name, error.position, repr(error.error))
    except Exception as unrecorded:  # noqa: BLE001 - the log line above says it anyway
        logger.warning("could not record that %s is stalled: %s", error.name, unrecorded)


def follow(
    app: Application[Any],
    follower: Follower,
    stop: threading.Event,
    applied: Callable[[int], None] | None = None,
) -> None:
    """Hand ``follower`` every event of its topics after its position until ``stop`` is set.

    A follower with ``process_events`` gets the events already pulled in batches (one
    transaction each, for a projection); when a batch fails it gets them one at a time,
    so the error names the event at fault. ``applied`` is called with the position of
    each event, or the last of each batch, once the follower has taken it.
    """
    # A follower split into segments keeps each segment's position under its own name.
    name = getattr(follower, "segment", WHOLE).tracking_name(app.name)
    resume_from = getattr(follower.view, "resume_from", follower.view.max_tracking_id)
    gt = resume_from(name)
    logger.info("%s following from %s", follower.name, gt or 0)
    with subscribe(app.recorder, gt, follower.event_topics()) as subscription:

        def stop_when_asked() -> None:
            stop.wait()
            subscription.stop()

        threading.Thread(target=stop_when_asked, daemon=True).start()
        batched = getattr(follower, "process_events", None)
        while True:
            try:
                notifications = subscription.next_batch(BATCH if batched else 1)
            except StopIteration:
                return
            if batched is not None and len(notifications) > 1:
                try:
                    events = [(_event(app, n), Tracking(name, n.id)) for n in notifications]
                    with tracing.taken(f"{follower.name} batch", _parents(follower, events)):
                        batched(events)
                except LeaseLostError:
                    raise
                except Exception:  # noqa: BLE001 - one at a time, to name the event at fault
                    logger.warning(
                        "%s: a batch failed; applying it one event at a time", follower.name
                    )
                    _one_by_one(app, follower, name, notifications, applied)
                else:
                    if applied is not None:
                        applied(notifications[-1].id)
            else:
                _one_by_one(app, follower, name, notifications, applied)


# The most events a batch-capable follower (a projection) applies in one transaction.
BATCH = 200


def _event(app: Application[Any], notification: Notification) -> Any:
    return app.mapper.to_domain_event(notification)


def _traced(event: Any) -> str | None:
    """The span recorded with ``event`` (a command's), if any."""
    traceparent = getattr(event, "traceparent", None)
    return traceparent if isinstance(traceparent, str) else None


def _traces_itself(follower: Follower) -> bool:
    """Whether ``follower`` opens its own spans for what it does with an event (the
    relay: one per publish), so that a span per event taken would only add to it."""
    return bool(getattr(follower, "traces_itself", False))


def _parents(follower: Follower, events: Sequence[tuple[Any, Tracking]]) -> list[str | None]:
    """The spans a batch of ``events`` is taken under (none for a follower that traces
    itself)."""
    return [] if _traces_itself(follower) else [_traced(e) for e, _ in events]


def _causes(
    app: Application[Any], follower: Follower, event: Any, notification: Notification
) -> list[str | None]:
    """The span ``event`` is taken under (none for a follower that traces itself)."""
    return [] if _traces_itself(follower) else [_cause(app, follower, event, notification)]


def _cause(
    app: Application[Any], follower: Follower, event: Any, notification: Notification
) -> str | None:
    """The span ``event`` continues: the one recorded with it, or for a follower that
    ``follows_causes`` (the saga runner), that of the command's run that saved it in
    the same transaction (one read, only while tracing)."""
    own = _traced(event)
    if own is not None or not tracing.enabled() or not getattr(follower, "follows_causes", False):
        return own
    together = getattr(app.recorder, "select_transaction_of", None)
    if together is None:
        return None
    for other in together(notification.id):
        if other.topic.startswith(COMMAND_TOPICS):
            found = _traced(_event(app, other))
            if found is not None:
                return found
    return None


def _one_by_one(
    app: Application[Any],
    follower: Follower,
    name: str,
    notifications: list[Notification],
    applied: Callable[[int], None] | None,
) -> None:
    for notification in notifications:
        try:
            event = _event(app, notification)
            with tracing.taken(follower.name, _causes(app, follower, event, notification)):
                follower.process_event(event, Tracking(name, notification.id))
        except LeaseLostError:
            raise  # not the event's fault: the follower's term is over
        except Exception as error:
            raise EventNotAppliedError(follower.name, notification.id, error) from error
        if applied is not None:
            applied(notification.id)
