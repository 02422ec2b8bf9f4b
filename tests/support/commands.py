"""Commands that exist only for tests, loaded into real workers by ``COMMAND_MODULES``.

``Bump`` increments a :class:`Tally` (countable effects), optionally after a nap (a
command a test can kill its worker in the middle of). ``Flaky`` fails technically a
given number of times, counting its attempts in a file so that separate worker
processes share the count.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from pydantic import BaseModel, ConfigDict

from application.catalog import CommandCatalog, CommandSpec
from application.unit_of_work import UnitOfWork
from domain.errors import RuleViolationError
from domain.ids import aggregate_id


class Tally(Aggregate):
    """A counter whose every increment is an event."""

    @staticmethod
    def create_id(key: str) -> UUID:
        return aggregate_id("tally", key)

    @event("TallyOpened")
    def __init__(self, key: str) -> None:
        self.key = key
        self.count = 0

    @event("TallyBumped")
    def bump(self) -> None:
        self.count += 1


class Bump(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str
    nap: float = 0.0
    refuse: bool = False
    # A file the handler appends its process id to as it starts: a run's sign of life
    # for tests (the first delivery runs without a recorded start).
    started_file: str | None = None


class Flaky(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str
    failures: int
    attempts_file: str


class RefusedError(RuleViolationError):
    """Raised by a ``Bump`` that was told to refuse."""


def bump(uow: UnitOfWork, cmd: Bump) -> None:
    if cmd.refuse:
        raise RefusedError("told to refuse")
    if cmd.started_file is not None:
        with Path(cmd.started_file).open("a") as started:
            started.write(f"{os.getpid()}\n")
    time.sleep(cmd.nap)
    tally_id = Tally.create_id(cmd.key)
    if uow.exists(tally_id):
        tally = uow.get(Tally, tally_id)
    else:
        tally = Tally(key=cmd.key)
        uow.add(tally)
    tally.bump()


def flaky(uow: UnitOfWork, cmd: Flaky) -> None:
    attempts = Path(cmd.attempts_file)
    with attempts.open("a") as log:
        log.write("attempt\n")
    if len(attempts.read_text().splitlines()) <= cmd.failures:
        raise ConnectionError("the gateway did not answer")
    bump(uow, Bump(key=cmd.key))


def register(catalog: CommandCatalog) -> None:
    catalog.register(
        CommandSpec(
            name="Bump",
            payload=Bump,
            handler=bump,
            target=lambda c: Tally.create_id(c.key),
            resource="/tallies/{key}",
        )
    )
    catalog.register(
        CommandSpec(
            name="Flaky",
            payload=Flaky,
            handler=flaky,
            target=lambda c: Tally.create_id(c.key),
            resource="/tallies/{key}",
        )
    )
