"""What the operator's sub-commands share: printing, progress, options, exit statuses.

Each read has ``--json`` (the same documents as the ``/admin`` HTTP endpoints); the
exit statuses are those of ``docs/operations.md``: 0 done, 1 not found or refused,
2 bad arguments, 3 differences found (a replay that diverged, a rebuild that differs
and was not swapped), 4 sagas that failed to replay.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
from interfaces import arguments

NOT_FOUND = 1
DIFFERENCES = 3
REPLAY_ERRORS = 4
# Rows a list prints unless --limit says otherwise.
LIST_LIMIT = 50

# Wide enough for ids unbroken when the output goes to a file or a pipe.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
errors = Console(stderr=True, highlight=False)

json_option = click.option("--json", "as_json", is_flag=True, help="print JSON")
limit_option = click.option(
    "--limit", default=LIST_LIMIT, show_default=True, type=click.IntRange(1, 100_000)
)
since_option = click.option("--since", help="from this time on (RFC 3339)")
until_option = click.option("--until", help="before this time (RFC 3339)")


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def as_json_printed(as_json: bool, data: Any) -> bool:
    """Print ``data`` as JSON when asked; whether it was."""
    if as_json:
        print_json(data)
    return as_json


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print a table; an empty cell for None."""
    shown = Table(title=title, title_justify="left")
    for column in columns:
        shown.add_column(column, overflow="fold")
    for row in rows:
        shown.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(shown)


class Bar:
    """A progress bar's two controls: how much there is, and how much more is done."""

    def __init__(self, bar: Progress, task: TaskID) -> None:
        self.bar = bar
        self.task = task

    def total(self, total: int) -> None:
        """There is ``total`` to do."""
        self.bar.update(self.task, total=total)

    def advance(self, done: int) -> None:
        """``done`` more is done."""
        self.bar.advance(self.task, done)


@contextmanager
def progress(what: str, total: int | None = None) -> Iterator[Bar]:
    """A progress bar on stderr, gone when done."""
    with Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
    ) as bar:
        yield Bar(bar, bar.add_task(what, total=total))


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
