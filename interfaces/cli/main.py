"""``boxoffice``: run the service or one of its parts, and inspect or repair it."""

from __future__ import annotations

import functools
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import FrameType
from typing import Any, NoReturn

import click
import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError

from application.segment import Segment
from infrastructure import heap, logs, metrics, tracing
from infrastructure.following import follow_until_stopped
from infrastructure.lease import Lease
from infrastructure.leased_work import (
    FencedTrackingRecorder,
    Guarded,
    PartFailedError,
    Shares,
    run_leased,
    run_together,
)
from infrastructure.log_recorder import TransactionOrderedRecorder
from infrastructure.settings import ApiKey, Settings, SettingsError, parse_api_keys
from interfaces.bootstrap import Container, bootstrap, migrate
from interfaces.cli import commands, sagas, views

logger = logging.getLogger("boxoffice")
DEADLINE_CHECK_SECONDS = 0.5


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``boxoffice`` console script; returns the exit status
    (``docs/operations.md`` lists them)."""
    try:
        result = cli.main(args=argv, prog_name="boxoffice", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.Abort:
        return 1
    except (InterfaceError, OperationalError, psycopg.OperationalError) as error:
        print(f"boxoffice: the event store cannot be reached: {error}", file=sys.stderr)
        return 1
    except PartFailedError as error:
        print(f"boxoffice: {error}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


class Parts(click.Group):
    """The sub-commands in the order they were added (parts first, then tools)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=Parts, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Run the service or one of its parts, and inspect or repair it."""


def load_settings(*, needs_database: bool = True, component: str = "cli") -> Settings:
    """The settings from the environment, with ``component``'s logging set up
    (:mod:`infrastructure.logs`); a bad setting (or no ``DATABASE_URL`` where one is
    needed) ends the command with status 2."""
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        raise click.UsageError(str(error)) from None
    if needs_database and settings.embedded_database:
        served = settings.served_database_file
        if not served.exists():
            raise click.UsageError(
                "DATABASE_URL is not set and no `boxoffice serve` (make run) is running "
                "its embedded PostgreSQL here; set DATABASE_URL, or start it"
            )
        settings = settings.with_database(served.read_text().strip())
    # After the database is known: its password is one of the secrets no line shows.
    logs.configure(settings, component)
    return settings


# The long-running parts: their counters reach /metrics (infrastructure/metrics.py).
COUNTING_PARTS = frozenset({"serve", "web", "worker", "relay", "projector", "saga-runner"})


def _trace(part: str) -> None:
    """Turn tracing on for ``part`` if OTEL_TRACES_EXPORTER asks (infrastructure/tracing.py);
    a setting it cannot follow ends the command with status 2."""
    try:
        tracing.configure(part)
    except tracing.TracingSettingsError as error:
        raise click.UsageError(str(error)) from None


def _part(name: str, help_text: str, needs_database: bool = True) -> Callable[..., Any]:
    """Register ``run(settings) -> int`` as the sub-command of one part."""

    def register(run: Callable[[Settings], int]) -> Callable[[Settings], int]:
        @cli.command(name, help=help_text)
        def command() -> int:
            settings = load_settings(needs_database=needs_database, component=name)
            if name not in COUNTING_PARTS:
                return run(settings)
            # Before anything counts: the processes of the part (gunicorn's, Celery's
            # pool) count into one directory that an exposition sums up.
            with metrics.process_directory(name):
                if settings.metrics_port is not None and name not in ("web", "serve"):
                    metrics.serve(settings.metrics_port, settings.web_host)
                if name != "serve":  # its parts trace themselves, each its own service
                    _trace(name)
                return run(settings)

        return run

    return register


@_part("serve", "Run everything (embedded PostgreSQL unless DATABASE_URL is set).", False)
def _serve(settings: Settings) -> int:
    from interfaces.cli.serve import serve

    return serve(settings)


@_part("migrate", "Create the event store's tables.")
def _migrate(settings: Settings) -> int:
    for table in migrate(settings):
        print(f"ready: {table}")
    return 0


@_part("openapi", "Print the OpenAPI document (with the commands of COMMAND_MODULES).", False)
def _openapi(settings: Settings) -> int:
    from application.event_log import BoxofficeApplication
    from interfaces.http import create_app

    # The in-memory store: the document needs the registry, not a connection.
    store = BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    client = create_app(bootstrap(settings, application=store)).test_client()
    print(client.get("/openapi.json").get_data(as_text=True), end="")
    return 0


@_part("web", "Serve HTTP under gunicorn.")
def _web(settings: Settings) -> int:
    from interfaces.cli.web import run_web

    run_web(settings)
    return 0


@_part("worker", "Execute commands (Celery worker).")
def _worker(settings: Settings) -> NoReturn:
    container = bootstrap(settings)
    argv = [
        "worker",
        f"--loglevel={logs.root_level(settings)}",
        f"--concurrency={settings.worker_concurrency}",
        # Each worker process its own node name: Celery's control queue of a name is
        # exclusive, so a second worker under the same name would not start.
        f"--hostname=boxoffice-{os.getpid()}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    if settings.broker.startswith("filesystem"):
        argv.append("--without-heartbeat")
    container.celery.worker_main(argv)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stop


@_part("relay", "Publish retries, re-drives and accepts left unpublished (outbox relay).")
def _relay(settings: Settings) -> int:
    container = bootstrap(settings)
    stop = _stop_on_signals()
    logger.info("relay publishing to %s", settings.broker.split("://")[0])
    sweeper = container.sweeper()
    relay = container.relay()
    net = container.safety_net()
    lease = container.lease("relay")
    heap.settled()

    def work(term: threading.Event) -> None:
        for tracker in (relay.view, net.view):
            if isinstance(tracker, FencedTrackingRecorder):
                tracker.fence = lease.fence
        net.stop = term
        # A quarter of the lease: a stranded command waits at most 1.25 leases.
        quarter = settings.command_lease_seconds / 4
        _every(quarter, _guarded(lease, sweeper.sweep), term, "sweeping stranded commands")

        def netting() -> None:
            while not term.is_set():
                try:
                    lease.guard()
                    net.seed(relay.view)
                    break
                except Exception as error:  # noqa: BLE001 - tried again while the term lasts
                    logger.warning("relay-net cannot start yet: %s", error)
                    term.wait(1.0)
            follow_until_stopped(container.app, Guarded(net, lease), term, stalls=net.stalls)

        net_thread = threading.Thread(target=netting, name="relay-net")
        net_thread.start()
        follow_until_stopped(container.app, Guarded(relay, lease), term, stalls=relay.stalls)
        net_thread.join()

    run_leased(lease, work, stop)
    container.close()
    return 0


def _guarded(lease: Lease, job: Callable[[], object]) -> Callable[[], object]:
    """``job``, run only while ``lease`` is held."""

    def run() -> object:
        lease.guard()
        return job()

    return run


def _every(seconds: float, job: Callable[[], object], stop: threading.Event, what: str) -> None:
    """Run ``job`` every ``seconds`` in a daemon thread until ``stop``; log its failures."""

    def loop() -> None:
        while not stop.wait(seconds):
            try:
                job()
            except Exception as error:  # noqa: BLE001 - any failure is retried next tick
                logger.warning("%s failed: %s; trying again in %g s", what, error, seconds)

    threading.Thread(target=loop, name=what, daemon=True).start()


@_part("projector", "Keep the read models up to date, deliver webhooks.")
def _projector(settings: Settings) -> int:
    container = bootstrap(settings)
    stop = _stop_on_signals()
    logger.info("projector running")
    projector = container.projector()
    heap.settled()
    try:
        projector.run(stop)
    finally:
        container.close()
    return 0


@_part("saga-runner", "Drive the reservation sagas and fire their deadlines.")
def _saga_runner(settings: Settings) -> int:
    stop = _stop_on_signals()
    root = bootstrap(settings)
    # Every segment's runner is built before any works: a store out of reach at start
    # ends the part (status 1, for its supervisor to retry), never one segment's thread.
    segments = [_SagaSegment(settings, s) for s in Segment.all(settings.saga_segments)]
    # The segments' leases, split with the other saga runners (each takes its share).
    shares = root.shares("saga-runner", len(segments))
    jobs: list[tuple[str, Callable[[], None]]] = [
        (f"saga-runner{s.segment.label}", functools.partial(s.run, stop, shares)) for s in segments
    ]
    if shares is not None:
        jobs.append(("shares", functools.partial(shares.run, stop)))
    logger.info("saga runner running (%d segment(s))", len(segments))
    heap.settled()
    try:
        run_together(jobs, stop)
    finally:
        for s in segments:
            s.container.close()
        root.close()
    return 0


class _SagaSegment:
    """One segment of the saga runner, under its own lease, with a container of its own:
    its application's recorder is fenced by that lease, not another segment's."""

    def __init__(self, settings: Settings, segment: Segment) -> None:
        self.segment = segment
        # The runner's subscription keeps two connections; deadlines and saves need more.
        self.container = bootstrap(replace(settings, db_pool_size=max(settings.db_pool_size, 4)))
        self.runner = self.container.saga_runner(segment)
        self.lease = self.container.lease("saga-runner" + segment.label)

    def run(self, stop: threading.Event, shares: Shares | None) -> None:
        """Work the segment while its lease is held, until ``stop``."""
        run_leased(self.lease, self.work, stop, shares)

    def work(self, term: threading.Event) -> None:
        """Decide on the segment's events and fire its deadlines until ``term``."""
        runner, lease = self.runner, self.lease
        # Its decisions (saga events, the commands they issue) and its position.
        recorder = self.container.app.recorder
        if isinstance(recorder, TransactionOrderedRecorder):
            recorder.fence = lease.fence
        if isinstance(runner.view, FencedTrackingRecorder):
            runner.view.fence = lease.fence
        fire = _guarded(lease, runner.fire_deadlines)
        _every(DEADLINE_CHECK_SECONDS, fire, term, "firing deadlines")
        follow_until_stopped(
            self.container.app, Guarded(runner, lease), term, stalls=self.container.stall_log()
        )


@cli.group()
def keys() -> None:
    """Make API keys."""


@keys.command("new")
@click.argument("client")
@click.option("--scopes", default="commands:write,commands:read", show_default=True)
def _new_key(client: str, scopes: str) -> int:
    """Print a new key for CLIENT and its API_KEYS entry."""
    key = secrets.token_urlsafe(32)
    entry = ApiKey(client, frozenset(scopes.split(",")), ApiKey.digest_of(key)).line()
    try:
        parse_api_keys(entry)  # the entry must be one the settings accept
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    print(f"key (give it to {client}; it is not stored): {key}")
    print(f"API_KEYS entry: {entry}")
    return 0


def _built() -> Container:
    return bootstrap(load_settings())


for group in (commands, sagas, views):
    group.register(cli, _built)


if __name__ == "__main__":
    sys.exit(main())
