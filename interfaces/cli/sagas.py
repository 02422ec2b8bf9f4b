"""``boxoffice sagas``: list, inspect, replay in a dry run, and retry sagas."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import click

from application.operations import sagas as saga_ops
from interfaces import arguments
from interfaces.bootstrap import Container
from interfaces.cli.output import (
    DIFFERENCES,
    REPLAY_ERRORS,
    as_json_printed,
    console,
    failures,
    json_option,
    limit_option,
    print_json,
    progress,
    since_option,
    table,
    until_option,
)


def register(cli: click.Group, built: Callable[[], Container]) -> None:
    """Add the ``sagas`` group to ``cli``."""

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
        if as_json_printed(as_json, {"items": found}):
            return 0
        table(
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
                container.operator, arguments.saga_id_of(container.catalog.sagas, saga)
            )
        if as_json_printed(as_json, found):
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
        table("timeline", ["at", "", "what", "outcome"], rows)
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
                ids = [arguments.saga_id_of(container.catalog.sagas, s) for s in saga]
            else:
                step_status = ("failed", "dead_lettered") if failed_step else ()
                chosen = saga_selection(container, state, None, since, until, step_status)
                ids = [UUID(s["saga_id"]) for s in chosen]
            candidates = arguments.candidate_slices(container.catalog.sagas, saga_class)
            with progress("replaying", len(ids)) as bar:
                done = saga_ops.replay(container.operator, ids, candidates, bar.advance)
        summary = done.summary
        if as_json:
            print_json(done.as_dict(every=show_all))
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
                table(
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

    @sagas.command("retry")
    @click.argument("saga")
    @json_option
    def sagas_retry(saga: str, as_json: bool) -> int:
        """Re-issue a stuck step (its command failed or was dead-lettered) as a new
        command, linked to the stuck one; again while it is pending issues nothing."""
        container = built()
        with failures():
            done = saga_ops.retry_saga(
                container.operator, arguments.saga_id_of(container.catalog.sagas, saga), by="cli"
            )
        if as_json:
            print_json(done)
        else:
            for step in done["steps"]:
                console.print(f"{step['result']}: {step['command_id']} ({step['status']})")
        return 0


def _decision(decision: dict[str, Any] | None) -> str:
    if decision is None:
        return "(none)"
    issued = ", ".join(f"{c['type']}({c['key']})" for c in decision["commands"])
    return str(decision["name"]) + (f" → {issued}" if issued else "")
