"""Following the event log without ever stalling.

eventsourcing's LISTEN/NOTIFY subscriptions pull new events only when a notification
arrives. A notification sent before the subscription's LISTEN is in place, or lost on
the way, leaves events unread until the next write, which on a quiet system may never
come (pyeventsourcing/eventsourcing#305). :func:`subscribe` adds a catch-up pull every
``interval`` seconds as a fallback; notifications still wake it at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Subscription

CATCH_UP_INTERVAL = 1.0


def subscribe(
    recorder: ApplicationRecorder,
    gt: int | None,
    topics: Sequence[str] = (),
    interval: float = CATCH_UP_INTERVAL,
) -> Subscription[Any]:
    """A subscription to ``recorder`` after position ``gt`` that also pulls every ``interval`` s."""
    subscription = recorder.subscribe(gt=gt, topics=topics)
    wake_up: threading.Event | None = getattr(subscription, "_has_been_notified", None)
    if wake_up is not None:

        def catch_up() -> None:
            while not subscription._has_been_stopped:
                time.sleep(interval)
                wake_up.set()

        threading.Thread(target=catch_up, name="subscription-catch-up", daemon=True).start()
    return subscription
