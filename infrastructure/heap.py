"""The objects a long-running part keeps for its whole life, kept out of the collector's way.

A part's process imports its modules and builds its composition root once; those
hundreds of thousands of objects are never garbage, yet each full collection of
Python's cyclic garbage collector walks all of them again. A full collection comes
every few thousand objects that outlive a request (a span waiting to be exported, a
connection's cache entry), and walking the start-up objects was most of its cost:
58 ms per collection in a web process (docs/throughput.md, "Garbage collection, and
the rest of tracing's cost").
:func:`settled` moves them to the permanent generation once the part is built, as
Python's documentation advises for a server (``gc.freeze``); what the part makes
afterwards is collected as before.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def settled() -> None:
    """Call once this process has built what it keeps until it stops (its modules, its
    composition root, its app), just before it starts serving: those objects are left
    out of every later collection. Garbage made during start-up is collected first, so
    that none of it is kept for good."""
    gc.collect()
    gc.freeze()
    logger.debug("start-up done: %d objects left out of garbage collection", gc.get_freeze_count())
