"""Every command this service executes: each slice registers its own."""

from __future__ import annotations

from application import reservations, shows
from application.registry import CommandRegistry


def build_registry() -> CommandRegistry:
    """The registry of the show and reservation commands."""
    registry = CommandRegistry()
    shows.register(registry)
    reservations.register(registry)
    return registry
