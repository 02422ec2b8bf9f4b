"""``boxoffice commands`` and ``boxoffice deadletters``: inspect and re-drive commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import islice
from typing import Any
from uuid import UUID

import click

from application.operations import commands as command_ops
from interfaces import arguments
from interfaces.bootstrap import Container
from interfaces.cli.output import (
    NOT_FOUND,
    as_json_printed,
    console,
    failures,
    json_option,
    limit_option,
    print_json,
    since_option,
    table,
    until_option,
)


def register(cli: click.Group, built: Callable[[], Container]) -> None:
    """Add the ``commands`` and ``deadletters`` groups to ``cli``."""

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
            options = {
                "status": status,
                "type": command_type,
                "resource": resource,
                "correlation_id": correlation_id,
                "since": since,
                "until": until,
            }
            filters = arguments.command_filters(container.catalog, options, "option")
        items = list(islice(container.operator.walk("command_registry", filters), limit))
        if as_json_printed(as_json, {"items": items}):
            return 0
        table(
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
        """A command's record: attempts with tracebacks, history, its timeline (each hop
        with its time), the events it caused."""
        container = built()
        with failures():
            record = command_ops.command_detail(container.operator, command_id)
        if as_json_printed(as_json, record):
            return 0
        console.print(
            f"[bold]{record['type']}[/] {record['command_id']}: [bold]{record['status']}[/]"
            f"\n  submitted {record['submitted_at']} by {record['submitted_by']}"
            f" for {record['client']}\n  correlation {record['correlation_id']}"
            f"  causation {record['causation_id']}\n  payload {json.dumps(record['payload'])}"
        )
        table(
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
        table(
            "timeline",
            ["ms", "hop", "at", "component", "attempt / view"],
            [
                [
                    f"{hop['ms']:.1f}",
                    hop["hop"],
                    hop["at"],
                    hop.get("component") or "",
                    str(hop.get("view") or hop.get("attempt") or ""),
                ]
                for hop in record["timeline"]
            ],
        )
        if record["caused"]:
            table(
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
        if as_json_printed(as_json, found):
            return 0
        table(
            "dead letters per error type",
            ["error type", "commands"],
            [[t, n] for t, n in found["counts"].items()],
        )
        table(
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
        print_json({"results": results})
    else:
        for result in results:
            console.print(
                f"{result['result']}: {result['command_id']}"
                + (f" ({result['detail']})" if result.get("detail") else "")
            )
        redriven = sum(r["result"] == "redriven" for r in results)
        console.print(f"re-driven {redriven} of {len(results)}")
    return NOT_FOUND if any(r["result"] == "not found" for r in results) else 0
