"""``boxoffice projections``: each view's lag, and a rebuild beside the live one."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from application.operations import views as view_ops
from interfaces import arguments
from interfaces.bootstrap import Container
from interfaces.cli.output import (
    DIFFERENCES,
    as_json_printed,
    console,
    failures,
    json_option,
    print_json,
    progress,
    table,
)


def register(cli: click.Group, built: Callable[[], Container]) -> None:
    """Add the ``projections`` group to ``cli``."""

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
        if as_json_printed(as_json, {"items": found}):
            return 0
        table(
            "projections",
            ["name", "position", "head", "lag (events)", "events/s", "lease holder (age s)"],
            [
                row
                for p in found
                for row in [
                    [
                        p["name"],
                        p["position"],
                        p["head"],
                        p["lag"],
                        p["events_per_s"],
                        _holder(p["lease"]),
                    ],
                    # A split view's segments, each under its own lease.
                    *(
                        [p["name"] + s["segment"], s["position"], "", "", "", _holder(s["lease"])]
                        for s in p["segments"]
                    ),
                ]
            ],
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
        with progress(f"rebuilding {name}") as bar:
            done = view_ops.rebuild(
                container.operator, projection, swap, bar.total, bar.advance, diff_rows=rows
            )
        diff = done["diff"]
        if as_json:
            print_json(done)
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


def _holder(lease: dict[str, Any] | None) -> str:
    if lease is None:
        return "(none)"
    lapsed = " lapsed" if lease["expires_in_seconds"] <= 0 else ""
    return f"{lease['holder']} ({lease['age_seconds']:g}{lapsed})"
