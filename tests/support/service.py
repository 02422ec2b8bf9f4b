"""The service built over a given event store, with the test commands registered."""

from __future__ import annotations

from typing import Any

from application.event_log import BoxofficeApplication
from infrastructure.settings import Settings
from interfaces.bootstrap import Container, bootstrap


def make_container(app: BoxofficeApplication, **settings: Any) -> Container:
    """The service over ``app``, with the test commands registered."""
    return bootstrap(
        Settings(command_modules=("tests.support.commands",), **settings), application=app
    )
