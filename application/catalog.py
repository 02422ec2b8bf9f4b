"""Which handler runs a command type, and which schema its payload must match.

Adding a command is one handler function plus one :meth:`CommandCatalog.register`
line; the HTTP route, its OpenAPI operation and its documents follow from that. A saga
is one :meth:`CommandCatalog.register_saga` line beside the commands it issues.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel

from application.saga_slice import SagaSlice
from application.unit_of_work import UnitOfWork

P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class Endpoint:
    """Where clients submit a command: ``path`` is a template whose ``{names}`` are
    payload fields given in the path (and not in the body)."""

    method: Literal["PUT", "POST"]
    path: str
    summary: str

    @property
    def parameters(self) -> list[str]:
        """The payload fields the path carries."""
        return re.findall(r"\{(\w+)\}", self.path)


@dataclass(frozen=True)
class CommandSpec(Generic[P]):
    """Everything the service knows about one command type.

    ``target`` maps a validated payload to the id of the aggregate it acts on;
    ``resource`` is the path of the resource it creates or changes, a template of
    payload fields. ``creates`` says the target must not exist yet, which the web checks
    when it accepts the command. ``correlate`` gives the correlation id of a command
    that starts a process (its saga's id). ``endpoint`` says where clients submit it;
    commands only sagas issue have none. ``after_lost`` runs (on fresh state, saving
    nothing) when an attempt ran the handler but could not record its outcome because
    another attempt decided the command meanwhile: it undoes what the handler did
    outside the event store, if the state calls for it.
    """

    name: str
    payload: type[P]
    handler: Callable[[UnitOfWork, P], None]
    target: Callable[[P], UUID]
    resource: str
    creates: bool = False
    correlate: Callable[[P], UUID] | None = None
    endpoint: Endpoint | None = None
    after_lost: Callable[[UnitOfWork, P], None] | None = None

    def run(self, uow: UnitOfWork, payload: dict[str, Any]) -> None:
        """Validate a stored payload and run the handler on it."""
        self.handler(uow, self.payload.model_validate(payload))

    def resource_of(self, payload: P) -> str:
        """The path of the resource ``payload`` creates or changes."""
        return self.resource.format_map(dict(payload))


class UnknownCommandError(LookupError):
    """Raised when a command type has no registered handler in this process."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"no handler for command type {name} in this process: "
            "is the module that registers it in COMMAND_MODULES?"
        )
        self.name = name


class CommandCatalog:
    """The command types this service executes, and the sagas that issue some of them."""

    def __init__(self) -> None:
        self._specs: dict[str, CommandSpec[Any]] = {}
        self.sagas: list[SagaSlice[Any]] = []

    def register_saga(self, saga: SagaSlice[Any]) -> None:
        """Add a kind of saga; the saga runner runs every one registered."""
        if any(type(known) is type(saga) for known in self.sagas):
            raise ValueError(f"saga {type(saga).__name__} is registered twice")
        self.sagas.append(saga)

    def register(self, spec: CommandSpec[Any]) -> None:
        """Add a command type; registering one name twice is a programming error."""
        if spec.name in self._specs:
            raise ValueError(f"command type {spec.name} is registered twice")
        if spec.endpoint is not None:
            missing = set(spec.endpoint.parameters) - set(spec.payload.model_fields)
            if missing:
                raise ValueError(f"{spec.name}: the path names no payload field {missing}")
        self._specs[spec.name] = spec

    def get(self, name: str) -> CommandSpec[Any]:
        """The spec of ``name``; raises :class:`UnknownCommandError`."""
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownCommandError(name) from None

    def __iter__(self) -> Iterator[CommandSpec[Any]]:
        return iter(self._specs.values())
