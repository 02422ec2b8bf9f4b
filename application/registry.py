"""Which handler runs a command type, and which schema its payload must match.

Adding a command is one handler function plus one :meth:`CommandRegistry.register` line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel

from application.unit_of_work import UnitOfWork

P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class CommandSpec(Generic[P]):
    """Everything the pipeline knows about one command type.

    ``target`` maps a validated payload to the id of the aggregate it acts on, and
    ``resource`` to the path of the resource it creates or changes. ``creates`` says the
    target must not exist yet, which the web can check when it accepts the command.
    ``present`` renders the resource for synchronous answers and reads. ``correlate``
    gives the correlation id of a command that starts a process (its saga's id).
    """

    name: str
    payload: type[P]
    handler: Callable[[UnitOfWork, P], None]
    target: Callable[[P], UUID]
    resource: Callable[[P], str]
    creates: bool = False
    present: Callable[[Any], dict[str, Any]] | None = None
    correlate: Callable[[P], UUID] | None = None

    def run(self, uow: UnitOfWork, payload: dict[str, Any]) -> None:
        """Validate a stored payload and run the handler on it."""
        self.handler(uow, self.payload.model_validate(payload))


class UnknownCommandError(LookupError):
    """Raised when a command type has no registered handler in this process."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"no handler for command type {name} in this process: "
            "is the module that registers it in COMMAND_MODULES?"
        )
        self.name = name


class CommandRegistry:
    """The command types this service executes."""

    def __init__(self) -> None:
        self._specs: dict[str, CommandSpec[Any]] = {}

    def register(self, spec: CommandSpec[Any]) -> None:
        """Add a command type; registering one name twice is a programming error."""
        if spec.name in self._specs:
            raise ValueError(f"command type {spec.name} is registered twice")
        self._specs[spec.name] = spec

    def get(self, name: str) -> CommandSpec[Any]:
        """The spec of ``name``; raises :class:`UnknownCommandError`."""
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownCommandError(name) from None

    def __iter__(self) -> Iterator[CommandSpec[Any]]:
        return iter(self._specs.values())
