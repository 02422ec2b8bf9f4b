"""Prometheus metrics: the pipeline's counters in every process, read at ``/metrics``.

Counters and histograms (:class:`PrometheusMetrics`, the application's
:class:`~application.ports.CommandMetrics`) are kept by the process that counts: a
gunicorn worker counts the accepts, a Celery pool process the attempts. Those parts run
several processes, so they count in prometheus_client's multi-process mode: each
process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``, and an exposition
adds up the files of every process of the directory (:func:`exposition`).
:func:`process_directory` gives a part its own directory when the variable is not
set; ``boxoffice serve`` gives all its children one, so the web's ``/metrics`` shows
the workers' counters too. On many hosts every other part serves its own on
``METRICS_PORT`` (a worker host's pool, the saga runner's issued commands), since a
directory is one host's and Prometheus scrapes each host.

What the log and the views know (how far behind each view is) is not counted by any
process: the web reads it from PostgreSQL when ``/metrics`` is scraped
(:class:`ViewsCollector`), so it is right whichever host applies the views.

prometheus_client picks its mode when it is first imported, from the environment, so
this module imports it only inside its functions, after the directory is set.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector, CollectorRegistry

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds from a command's accept to its outcome: a saga step takes tens of
# milliseconds, a retried one seconds, a dead-lettered one minutes.
OUTCOME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


@contextmanager
def process_directory(component: str) -> Iterator[Path]:
    """The multi-process directory of this process and its children while the block
    runs: the one ``PROMETHEUS_MULTIPROC_DIR`` names (whoever set it clears it between
    runs: ``boxoffice serve`` makes a new one per run), or a new one for ``component``,
    set in the environment so that the children forked or started inside count into
    it, and removed after the block."""
    named = os.environ.get(MULTIPROCESS_DIR)
    if named:
        Path(named).mkdir(parents=True, exist_ok=True)
        yield Path(named)
        return
    made = Path(tempfile.mkdtemp(prefix=f"boxoffice-metrics-{component}-"))
    os.environ[MULTIPROCESS_DIR] = str(made)
    try:
        yield made
    finally:
        del os.environ[MULTIPROCESS_DIR]
        shutil.rmtree(made, ignore_errors=True)


class PrometheusMetrics:
    """The pipeline's counters, as Prometheus' naming guide has them."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        # Not the library's global registry: a process may build more than one (tests),
        # and in multi-process mode the values live in files, not in a registry.
        self.registry = CollectorRegistry(auto_describe=True)
        own = None if os.environ.get(MULTIPROCESS_DIR) else self.registry
        self._accepted = Counter(
            "boxoffice_commands_accepted",
            "Commands accepted (recorded durably), by type.",
            ["type"],
            registry=own,
        )
        self._attempts = Counter(
            "boxoffice_command_attempts",
            "Attempts run by the workers, by type and outcome (succeeded, failed, "
            "retry_scheduled, dead_lettered, skipped).",
            ["type", "outcome"],
            registry=own,
        )
        self._outcome_seconds, self._visible_seconds = (
            Histogram(name, text, ["type", "outcome"], buckets=OUTCOME_BUCKETS, registry=own)
            for name, text in (
                (
                    "boxoffice_command_outcome_seconds",
                    "Seconds from a command's accept to its final outcome, by type and outcome.",
                ),
                (
                    "boxoffice_command_visible_seconds",
                    "Seconds from a command's accept until its final outcome is in the "
                    "registry (what a client polling it sees), by type and outcome.",
                ),
            )
        )
        self._webhooks = Counter(
            "boxoffice_webhook_attempts",
            "Webhook delivery attempts, by outcome (delivered, failed: tried again later, "
            "parked: given up, refused: an address not allowed).",
            ["outcome"],
            registry=own,
        )
        self._published = Counter(
            "boxoffice_command_messages_published",
            "Command messages published, by source: accepting_process (a command's first, "
            "from the process that accepted it), safety_net (a first message the relay "
            "sent for want of that one), retry, redrive.",
            ["source"],
            registry=own,
        )
        self._refused = Counter(
            "boxoffice_requests_limited",
            "Requests refused: 429 by the rate or streams limit, 503 by a full backlog.",
            ["limit"],
            registry=own,
        )

    def accepted(self, command_type: str) -> None:
        """Count a new command."""
        self._accepted.labels(command_type).inc()

    def attempted(self, command_type: str, outcome: str, since_accepted: float | None) -> None:
        """Count an attempt, and time a final outcome from the accept."""
        self._attempts.labels(command_type, outcome).inc()
        if since_accepted is not None:
            self._outcome_seconds.labels(command_type, outcome).observe(max(since_accepted, 0.0))

    def visible(self, command_type: str, outcome: str, since_accepted: float) -> None:
        """Time a final outcome's arrival in the registry from the accept."""
        self._visible_seconds.labels(command_type, outcome).observe(since_accepted)

    def webhook_attempt(self, outcome: str) -> None:
        """Count a webhook delivery attempt."""
        self._webhooks.labels(outcome).inc()

    def published(self, source: str) -> None:
        """Count a command message handed to the broker by ``source``."""
        self._published.labels(source).inc()

    def limited(self, limit: str) -> None:
        """Count a request refused by a limit (``rate``, ``streams``, ``backlog``)."""
        self._refused.labels(limit).inc()


@dataclass(frozen=True)
class StoreReadings:
    """What a scrape reads from the store (and the broker), each a function called then.

    ``views`` is :func:`application.operations.views.projections_status` (one item per
    view), ``followers`` :func:`~application.operations.views.followers_status` (the
    relay, the saga runner); ``commands`` and ``sagas`` count the registry's rows by
    status and the sagas view's by state; ``stuck_sagas`` counts the running sagas that
    wait on a dead-lettered command; ``webhooks`` the deliveries by status; ``queue``
    the messages ready in the command queue (None: the broker did not say).
    """

    views: Callable[[], list[dict[str, Any]]]
    followers: Callable[[], list[dict[str, Any]]]
    commands: Callable[[], dict[str, int]]
    sagas: Callable[[], dict[str, int]]
    stuck_sagas: Callable[[], int]
    webhooks: Callable[[], dict[str, int]]
    queue: Callable[[], int | None]


class ViewsCollector:
    """The gauges read from the store when scraped: each view's and follower's position
    and lag, the log's head, the commands by status, the sagas by state and those stuck,
    the webhook deliveries by status, and the command queue's depth. A store out of
    reach makes a scrape with ``boxoffice_views_up`` 0 rather than an error.
    """

    def __init__(self, read: StoreReadings) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        """The gauges, as of now."""
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("boxoffice_views_up", "Whether the views could be read.")
        try:
            items, followers = self.read.views(), self.read.followers()
            by_status, by_state = self.read.commands(), self.read.sagas()
            stuck, webhooks = self.read.stuck_sagas(), self.read.webhooks()
        except Exception:  # noqa: BLE001 - a scrape reports the outage, it does not fail
            up.add_metric([], 0)
            yield up
            yield from self._queue()
            return
        up.add_metric([], 1)
        yield up

        def gauge(name: str, text: str, label: str, values: dict[str, float]) -> Metric:
            family = GaugeMetricFamily(name, text, labels=[label])
            for value, count in sorted(values.items()):
                family.add_metric([value], count)
            return family

        def per(key: str, rows: list[dict[str, Any]]) -> dict[str, float]:
            return {row["name"]: row[key] or 0 for row in rows}

        head = GaugeMetricFamily("boxoffice_log_head", "Position of the log's last event.")
        head.add_metric([], items[0]["head"] if items else 0)
        yield head
        yield gauge(
            "boxoffice_view_position",
            "Position up to which a view has applied.",
            "view",
            per("position", items),
        )
        yield gauge(
            "boxoffice_view_lag_events",
            "Events of a view's topics it has yet to apply (counted up to 10,000).",
            "view",
            per("lag", items),
        )
        yield gauge(
            "boxoffice_view_lag_seconds",
            "Age of the oldest event a view has yet to apply (0: none).",
            "view",
            per("lag_seconds", items),
        )
        yield gauge(
            "boxoffice_follower_lag_events",
            "Events the relay or the saga runner has yet to take (counted up to 10,000).",
            "follower",
            per("lag", followers),
        )
        yield gauge(
            "boxoffice_follower_lag_seconds",
            "Age of the oldest event the relay or the saga runner has yet to take (0: none).",
            "follower",
            per("lag_seconds", followers),
        )
        yield gauge(
            "boxoffice_commands",
            "Commands in the registry by status (accepted, running and retrying: the backlog).",
            "status",
            dict(by_status),
        )
        yield gauge(
            "boxoffice_sagas",
            "Sagas by state, as the sagas view has them.",
            "state",
            dict(by_state),
        )
        stuck_gauge = GaugeMetricFamily(
            "boxoffice_sagas_stuck",
            "Running sagas waiting on a dead-lettered command (an operator must re-drive it).",
        )
        stuck_gauge.add_metric([], stuck)
        yield stuck_gauge
        yield gauge(
            "boxoffice_webhook_deliveries",
            "Webhook deliveries by status (pending, delivered, parked).",
            "status",
            dict(webhooks),
        )
        yield from self._queue()

    def _queue(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            depth = self.read.queue()
        except Exception:  # noqa: BLE001 - the broker out of reach: no figure, no error
            depth = None
        if depth is not None:
            family = GaugeMetricFamily(
                "boxoffice_queue_messages", "Messages ready in the command queue (the broker's)."
            )
            family.add_metric([], depth)
            yield family


def exposition(own: CollectorRegistry, *collectors: Collector) -> bytes:
    """The text of a scrape: every process's counters (those of the multi-process
    directory, or ``own`` registry's in a single process) and ``collectors``."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory:
        registry.register(ProcessFiles(directory))
    else:
        registry.register(own)
    for collector in collectors:
        registry.register(collector)
    return bytes(generate_latest(registry))


def serve(port: int, host: str) -> None:
    """Serve the counters of this part's processes on ``host``:``port`` (``METRICS_PORT``
    on ``WEB_HOST``'s address), from a thread of this process."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProcessFiles(os.environ[MULTIPROCESS_DIR]))
    start_http_server(port, addr=host, registry=registry)


# A scrape that meets a file being created is read again this many times.
READ_TRIES = 5


class ProcessFiles:
    """The sums of the multi-process directory's files (prometheus_client's
    ``MultiProcessCollector``), read again when a process has just created its file:
    an empty file made between the listing and the read fails the library's read."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def collect(self) -> Iterator[Metric]:
        """The summed metrics of every process's files."""
        import struct

        from prometheus_client import multiprocess

        files = multiprocess.MultiProcessCollector(None, path=self.directory)  # type: ignore[no-untyped-call]
        for tried in range(READ_TRIES):
            try:
                found: list[Metric] = list(files.collect())  # type: ignore[no-untyped-call]
            except struct.error:
                if tried == READ_TRIES - 1:
                    raise
                time.sleep(0.01)
            else:
                yield from found
                return
