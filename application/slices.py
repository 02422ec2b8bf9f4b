"""Every command and saga this service runs: each slice registers its own."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from application import reservations, shows
from application.catalog import CommandCatalog
from application.reservation_saga import RESERVATION_SAGA


def build_catalog(modules: Sequence[str] = ()) -> CommandCatalog:
    """The catalog of the show and reservation commands and the reservation saga, and
    of what the ``modules`` (``COMMAND_MODULES``) add: each has a ``register(catalog)``."""
    catalog = CommandCatalog()
    shows.register(catalog)
    reservations.register(catalog)
    catalog.register_saga(RESERVATION_SAGA)
    for name in modules:
        importlib.import_module(name).register(catalog)
    return catalog
