"""A long-running part leaves what it built at start-up out of later collections."""

from __future__ import annotations

import json
import textwrap

from tests.support.processes import last_line_of

SETTLED_IN_A_PROCESS = textwrap.dedent(
    """
    import gc, json, weakref
    from infrastructure import heap

    class Node:
        pass

    kept = [Node() for _ in range(1000)]
    cycle = Node()
    cycle.me = cycle  # garbage of start-up, reachable only from itself
    dropped = weakref.ref(cycle)
    del cycle
    before = gc.get_freeze_count()
    heap.settled()
    made_later = Node()
    print(json.dumps({
        "frozen": gc.get_freeze_count() - before,
        "cycle_collected": dropped() is None,
        # A frozen object is in no generation: no collection walks it.
        "kept_walked": any(o is kept[0] for o in gc.get_objects()),
        "later_walked": any(o is made_later for o in gc.get_objects()),
    }))
    """
)


def test_start_up_objects_are_frozen_and_its_garbage_collected_first() -> None:
    found = json.loads(last_line_of(SETTLED_IN_A_PROCESS))
    assert found["frozen"] >= 1000
    assert found["cycle_collected"]
    assert not found["kept_walked"]
    assert found["later_walked"]
