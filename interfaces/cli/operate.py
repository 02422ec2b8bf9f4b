"""The operator's sub-commands: commands, sagas, projections and dead letters.

Each read has ``--json`` (the same documents as the ``/admin`` HTTP endpoints); the
exit statuses are those of ``docs/operations.md``: 0 done, 1 not found or refused,
2 bad arguments, 3 differences found (a replay that diverged, a rebuild that differs
and was not swapped), 4 sagas that failed to replay.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any
from uuid import UUID

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from application.operations import NotFoundError, RefusedError
from application.operations import commands as command_ops
from application.operations import sagas as saga_ops
from application.operations import views as view_ops
from infrastructure.settings import Settings
from interfaces import arguments
from interfaces.bootstrap import Container, bootstrap

NOT_FOUND = 1
DIFFERENCES = 3
REPLAY_ERRORS = 4
# Rows a list prints unless --limit says otherwise.
LIST_LIMIT = 50

# Wide enough for ids unbroken when the output goes to a file or a pipe.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
errors = Console(stderr=True, highlight=False)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _as_json_printed(as_json: bool, data: Any) -> bool:
    """Print ``data`` as JSON when asked; whether it was."""
    if as_json:
        _print_json(data)
    return as_json


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(table)


class Bar:
    """A progress bar's two controls: how much there is, and how much more is done."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self.progress = progress
        self.task = task

    def total(self, total: int) -> None:
        """There is ``total`` to do."""
        self.progress.update(self.task, total=total)

    def advance(self, done: int) -> None:
        """``done`` more is done."""
        self.progress.advance(self.task, done)


@contextmanager
def _progress(what: str, total: int | None = None) -> Iterator[Bar]:
    """A progress bar on stderr, gone when done."""
    with Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
    ) as progress:
        yield Bar(progress, progress.add_task(what, total=total))


def register(cli: click.Group, load_settings: Callable[[], Settings]) -> None:
    """Add the operator's groups to ``cli``."""

    def built() -> Container:
        return bootstrap(load_settings())

    @contextmanager
    def failures() -> Iterator[None]:
        """Bad arguments exit 2, a missing or refused target 1, with the reason."""
        try:
            yield
        except arguments.BadArgumentsError as bad:
            raise click.UsageError(str(bad)) from None
        except (NotFoundError, RefusedError) as error:
            errors.print(f"boxoffice: {error}")
            raise click.exceptions.Exit(NOT_FOUND) from None

    json_option = click.option("--json", "as_json", is_flag=True, help="print JSON")
    limit_option = click.option(
        "--limit", default=LIST_LIMIT, show_default=True, type=click.IntRange(1, 100_000)
    )
    since_option = click.option("--since", help="from this time on (RFC 3339)")
    until_option = click.option("--until", help="before this time (RFC 3339)")

    # --- commands -----------------------------------------------------------------

    @cli.group()
    def commands() -> None:
        """List, inspect and re-drive commands."""

    @commands.command("list")
    @click.option("--status")
    @click.option("--type", "command_type")
    @click.option("--resource", help="a resource path (/shows/s1) or a client's id (s1)")
    @click.option("--correlation-id")
    @since_option
    @until_option
    @limit_option
    @json_option
    def commands_list(
        status: str | None,
        command_type: str | None,
        resource: str | None,
        correlation_id: str | None,
        since: str | None,
        until: str | None,
        limit: int,
        as_json: bool,
    ) -> int:
        """List commands from the registry, oldest first."""
        container = built()
        with failures():
            filters = arguments.command_filters(
                container.registry,
                status=status,
                command_type=command_type,
                resource=resource,
                correlation_id=correlation_id,
                since=since,
                until=until,
                location="option",
            )
        items = list(islice(container.operator.walk("command_registry", filters), limit))
        if _as_json_printed(as_json, {"items": items}):
            return 0
        _table(
            f"{len(items)} command(s)",
            ["command_id", "type", "status", "attempts", "submitted_at", "resource"],
            [
                [
                    i["command_id"],
                    i["type"],
                    i["status"],
                    len(i["attempts"]),
                    i["submitted_at"],
                    (i.get("links") or {}).get("resource"),
                ]
                for i in items
            ],
        )
        return 0

    @commands.command("show")
    @click.argument("command_id", type=click.UUID)
    @json_option
    def commands_show(command_id: UUID, as_json: bool) -> int:
        """A command's record: attempts with tracebacks, history, the events it caused."""
        container = built()
        with failures():
            record = command_ops.command_detail(container.operator, command_id)
        if _as_json_printed(as_json, record):
            return 0
        console.print(
            f"[bold]{record['type']}[/] {record['command_id']}: [bold]{record['status']}[/]"
            f"\n  submitted {record['submitted_at']} by {record['submitted_by']}"
            f" for {record['client']}\n  correlation {record['correlation_id']}"
            f"  causation {record['causation_id']}\n  payload {json.dumps(record['payload'])}"
        )
        _table(
            "history",
            ["at", "status", "component", "detail"],
            [[h["at"], h["status"], h["component"], h["detail"]] for h in record["history"]],
        )
        for attempt in record["attempts"]:
            error = attempt.get("error") or {}
            console.print(
                f"attempt {attempt['attempt']} on {attempt.get('worker')}: "
                f"{attempt.get('outcome') or 'running'} {error.get('type', '')} "
                f"{error.get('message', '')}"
            )
            if error.get("traceback"):
                console.print(error["traceback"], markup=False)
        if record["caused"]:
            _table(
                "events saved with its success",
                ["aggregate_id", "version", "event"],
                [[e["aggregate_id"], e["version"], e["event"]] for e in record["caused"]],
            )
        return 0

    @commands.command("redrive")
    @click.argument("command_id", type=click.UUID)
    @click.option("--reason", default="re-driven by an operator", show_default=True)
    def commands_redrive(command_id: UUID, reason: str) -> int:
        """Give a dead-lettered command new attempts (as `deadletters redrive ID`)."""
        return _redrive(built(), [command_id], None, False, reason, False)

    # --- dead letters -------------------------------------------------------------

    @cli.group()
    def deadletters() -> None:
        """List and re-drive dead-lettered commands."""

    @deadletters.command("list")
    @click.option("--type", "error_type", help="only those whose last error is of this type")
    @json_option
    def deadletters_list(error_type: str | None, as_json: bool) -> int:
        """Dead-lettered commands, and how many per error type."""
        found = command_ops.dead_letters(built().operator, error_type)
        if _as_json_printed(as_json, found):
            return 0
        _table(
            "dead letters per error type",
            ["error type", "commands"],
            [[t, n] for t, n in found["counts"].items()],
        )
        _table(
            f"{len(found['items'])} dead-lettered command(s)",
            ["command_id", "type", "attempts", "error", "updated_at"],
            [
                [
                    i["command_id"],
                    i["type"],
                    len(i["attempts"]),
                    _error_line(i.get("error")),
                    i["updated_at"],
                ]
                for i in found["items"]
            ],
        )
        return 0

    @deadletters.command("redrive")
    @click.argument("command_ids", nargs=-1, type=click.UUID)
    @click.option("--type", "error_type", help="every dead letter whose last error is of this type")
    @click.option("--all", "every", is_flag=True, help="every dead letter")
    @click.option("--reason", default="re-driven by an operator", show_default=True)
    @json_option
    def deadletters_redrive(
        command_ids: tuple[UUID, ...],
        error_type: str | None,
        every: bool,
        reason: str,
        as_json: bool,
    ) -> int:
        """Give dead-lettered commands new attempts; each keeps its id."""
        chosen = sum([bool(command_ids), error_type is not None, every])
        if chosen != 1:
            raise click.UsageError("give command ids, --type T or --all (one of them)")
        return _redrive(built(), list(command_ids), error_type, every, reason, as_json)

    # --- sagas --------------------------------------------------------------------

    @cli.group()
    def sagas() -> None:
        """List, inspect, replay and retry sagas."""

    def saga_selection(
        container: Container,
        state: str | None,
        stuck_for: str | None,
        since: str | None,
        until: str | None,
        step_status: tuple[str, ...],
    ) -> list[dict[str, Any]]:
        with failures():
            filters = arguments.saga_filters(
                state=state, stuck_for=stuck_for, since=since, until=until, location="option"
            )
        return saga_ops.list_sagas(container.operator, filters, step_status)

    @sagas.command("list")
    @click.option("--state")
    @click.option("--stuck-for", help="running and unchanged for this long (30s, 5m, 2h, 1d)")
    @click.option("--dead-lettered", is_flag=True, help="with a dead-lettered command")
    @since_option
    @until_option
    @limit_option
    @json_option
    def sagas_list(
        state: str | None,
        stuck_for: str | None,
        dead_lettered: bool,
        since: str | None,
        until: str | None,
        limit: int,
        as_json: bool,
    ) -> int:
        """List sagas, oldest first."""
        container = built()
        step_status = ("dead_lettered",) if dead_lettered else ()
        found = saga_selection(container, state, stuck_for, since, until, step_status)[:limit]
        if _as_json_printed(as_json, {"items": found}):
            return 0
        _table(
            f"{len(found)} saga(s)",
            ["saga_id", "reservation", "state", "run", "deadline_at", "decisions"],
            [
                [
                    s["saga_id"],
                    s["reservation_id"],
                    s["state"],
                    s["run"],
                    s["deadline_at"],
                    " → ".join(d["name"].removeprefix("Saga") for d in s["decisions"]),
                ]
                for s in found
            ],
        )
        return 0

    @sagas.command("show")
    @click.argument("saga")
    @json_option
    def sagas_show(saga: str, as_json: bool) -> int:
        """A saga's timeline (SAGA is its id or its reservation's)."""
        container = built()
        with failures():
            found = saga_ops.saga_detail(
                container.operator, arguments.saga_id_of(container.registry.sagas, saga)
            )
        if _as_json_printed(as_json, found):
            return 0
        console.print(
            f"saga {found['saga_id']} of reservation {found['reservation_id']} "
            f"(show {found['show_id']}): [bold]{found['state']}[/], run {found['run']}"
            + (f", deadline {found['deadline_at']}" if found["deadline_at"] else "")
        )
        rows = []
        for entry in found["timeline"]:
            if entry["kind"] == "event":
                rows.append([entry["at"], "received", entry["name"], ""])
            elif entry["kind"] == "decision":
                what = entry["name"] + (
                    f" → issues {', '.join(entry['issued'])}" if entry.get("issued") else ""
                )
                if entry.get("cause"):
                    what += f" (on {entry['cause']})"
                if entry.get("fired_at"):
                    detail = f"deadline passed at {entry['fired_at']}"
                elif entry.get("deadline_at"):
                    detail = f"deadline set: {entry['deadline_at']}"
                else:
                    detail = ""
                rows.append([entry["at"], "decided", what, detail])
            else:
                rows.append(
                    [
                        entry["at"],
                        "command",
                        f"{entry['name']} {entry['command_id']}",
                        entry["status"],
                    ]
                )
        _table("timeline", ["at", "", "what", "outcome"], rows)
        return 0

    @sagas.command("replay")
    @click.argument("saga", nargs=-1)
    @click.option("--all", "every", is_flag=True, help="every saga")
    @click.option("--state", help="the sagas in this state")
    @click.option(
        "--failed-step", is_flag=True, help="the sagas with a failed or dead-lettered command"
    )
    @since_option
    @until_option
    @click.option(
        "--saga-class",
        help="replay with this class (package.module:Class) instead of the deployed one",
    )
    @click.option("--show-all", is_flag=True, help="list identical sagas too")
    @json_option
    def sagas_replay(
        saga: tuple[str, ...],
        every: bool,
        state: str | None,
        failed_step: bool,
        since: str | None,
        until: str | None,
        saga_class: str | None,
        show_all: bool,
        as_json: bool,
    ) -> int:
        """Replay sagas with the current code (or --saga-class) in a dry run, and report
        where their decisions, issued commands or final state would differ.

        Exit status 0 when every saga replays identically, 3 when some diverge, 4 when
        some fail to replay.
        """
        container = built()
        query = every or state or failed_step or since or until
        if bool(saga) == bool(query):
            raise click.UsageError(
                "give saga ids, or --all / --state / --failed-step / --since / --until"
            )
        with failures():
            if saga:
                ids = [arguments.saga_id_of(container.registry.sagas, s) for s in saga]
            else:
                step_status = ("failed", "dead_lettered") if failed_step else ()
                chosen = saga_selection(container, state, None, since, until, step_status)
                ids = [UUID(s["saga_id"]) for s in chosen]
            candidates = arguments.candidate_slices(container.registry.sagas, saga_class)
            with _progress("replaying", len(ids)) as bar:
                done = saga_ops.replay(container.operator, ids, candidates, bar.advance)
        summary = done.summary
        if as_json:
            _print_json(done.as_dict(every=show_all))
        else:
            shown = [s for s in done.sagas if show_all or s.verdict.value != "identical"]
            rows = []
            for replayed in shown:
                divergence = replayed.divergence() or {}
                recorded = divergence.get("recorded")
                now = divergence.get("replayed")
                rows.append(
                    [
                        replayed.subject,
                        replayed.verdict.value,
                        f"{replayed.recorded_state} → {replayed.replayed_state}",
                        divergence.get("step", ""),
                        _decision(recorded) if divergence else "",
                        _decision(now) if divergence else (replayed.error or ""),
                    ]
                )
            if rows:
                _table(
                    "sagas that replay differently",
                    ["reservation", "verdict", "final state", "step", "recorded", "replayed"],
                    rows,
                )
            rate = summary.replayed / done.seconds if done.seconds else 0.0
            console.print(
                f"replayed {summary.replayed}: {summary.identical} identical, "
                f"{summary.diverged} diverged, {summary.errors} errors "
                f"({done.seconds:.2f} s, {rate:,.0f} sagas/s)"
            )
            if summary.diverged:
                console.print(f"this code changes the outcome of {summary.diverged} saga(s)")
        if summary.errors:
            return REPLAY_ERRORS
        return DIFFERENCES if summary.diverged else 0

    # --- projections --------------------------------------------------------------

    @cli.group()
    def projections() -> None:
        """Inspect and rebuild the read models."""

    @projections.command("status")
    @click.option(
        "--sample",
        default=1.0,
        show_default=True,
        type=click.FloatRange(0.1, 60),
        help="seconds over which events/s is measured",
    )
    @json_option
    def projections_status(sample: float, as_json: bool) -> int:
        """Each view's position, the log's head, its lag in events and its events/s."""
        found = view_ops.projections_status(built().operator, sample)
        if _as_json_printed(as_json, {"items": found}):
            return 0
        _table(
            "projections",
            ["name", "position", "head", "lag (events)", "events/s"],
            [[p["name"], p["position"], p["head"], p["lag"], p["events_per_s"]] for p in found],
        )
        return 0

    @projections.command("rebuild")
    @click.argument("name")
    @click.option("--swap", is_flag=True, help="put the rebuilt view in the live one's place")
    @click.option("--rows", default=10, show_default=True, help="differing rows to show")
    @json_option
    def projections_rebuild(name: str, swap: bool, rows: int, as_json: bool) -> int:
        """Rebuild view NAME from zero into a shadow table while the live one serves,
        show how it differs from the live one, and swap them only with --swap.

        Exit status 3 when they differ and were not swapped.
        """
        container = built()
        with failures():
            projection = arguments.projection_class(name)
        with _progress(f"rebuilding {name}") as bar:
            done = view_ops.rebuild(
                container.operator, projection, swap, bar.total, bar.advance, diff_rows=rows
            )
        diff = done["diff"]
        if as_json:
            _print_json(done)
        else:
            console.print(
                f"rebuilt {name}: {done['events']} events in {done['seconds']} s "
                f"({done['events_per_s']:,.0f} events/s)\n"
                f"rows: live {diff['live_rows']}, rebuilt {diff['shadow_rows']}; "
                f"{diff['differing']} differ (compared up to position {diff['position']})"
            )
            for row in diff["first"]:
                console.print(f"[bold]{row['id']}[/]")
                console.print(f"  live:    {json.dumps(row['live'], sort_keys=True)}", markup=False)
                console.print(
                    f"  rebuilt: {json.dumps(row['shadow'], sort_keys=True)}", markup=False
                )
            if swap:
                console.print(f"swapped at position {done['swapped_at']}")
            elif diff["differing"]:
                console.print("not swapped: run again with --swap to serve the rebuilt view")
        return DIFFERENCES if diff["differing"] and not swap else 0

    @sagas.command("retry")
    @click.argument("saga")
    @json_option
    def sagas_retry(saga: str, as_json: bool) -> int:
        """Re-issue a stuck step (its command failed or was dead-lettered) as a new
        command, linked to the stuck one; again while it is pending issues nothing."""
        container = built()
        with failures():
            done = saga_ops.retry_saga(
                container.operator, arguments.saga_id_of(container.registry.sagas, saga), by="cli"
            )
        if as_json:
            _print_json(done)
        else:
            for step in done["steps"]:
                console.print(f"{step['result']}: {step['command_id']} ({step['status']})")
        return 0


def _decision(decision: dict[str, Any] | None) -> str:
    if decision is None:
        return "(none)"
    issued = ", ".join(f"{c['type']}({c['key']})" for c in decision["commands"])
    return str(decision["name"]) + (f" → {issued}" if issued else "")


def _error_line(error: dict[str, Any] | None) -> str:
    error = error or {}
    return f"{error.get('type')}: {error.get('message')}"


def _redrive(
    container: Container,
    command_ids: list[UUID],
    error_type: str | None,
    every: bool,
    reason: str,
    as_json: bool,
) -> int:
    results = command_ops.redrive(container.operator, command_ids, error_type, every, "cli", reason)
    if as_json:
        _print_json({"results": results})
    else:
        for result in results:
            console.print(
                f"{result['result']}: {result['command_id']}"
                + (f" ({result['detail']})" if result.get("detail") else "")
            )
        redriven = sum(r["result"] == "redriven" for r in results)
        console.print(f"re-driven {redriven} of {len(results)}")
    return NOT_FOUND if any(r["result"] == "not found" for r in results) else 0
