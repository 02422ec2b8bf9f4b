"""Client-assigned ids become aggregate ids deterministically.

A repeated create therefore collides with the first one (a version conflict in the event
store) instead of creating a second aggregate.
"""

from __future__ import annotations

from uuid import UUID, uuid5

NAMESPACE = UUID("6f1c1b1e-4a0e-5d55-9a3c-0b0c5e0ff1ce")


def aggregate_id(kind: str, client_id: str) -> UUID:
    """The aggregate id of the ``kind`` resource that the client calls ``client_id``."""
    return uuid5(NAMESPACE, f"{kind}:{client_id}")
