"""Every command and saga this service runs: each slice registers its own."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from application import reservations, shows
from application.registry import CommandRegistry
from application.reservation_saga import RESERVATION_SAGA


def build_registry(modules: Sequence[str] = ()) -> CommandRegistry:
    """The registry of the show and reservation commands and the reservation saga, and
    of what the ``modules`` (``COMMAND_MODULES``) add: each has a ``register(registry)``."""
    registry = CommandRegistry()
    shows.register(registry)
    reservations.register(registry)
    registry.register_saga(RESERVATION_SAGA)
    for name in modules:
        importlib.import_module(name).register(registry)
    return registry
