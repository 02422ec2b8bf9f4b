"""The recorded history's count of what a follower has yet to take."""

from __future__ import annotations

from application.event_log import BoxofficeApplication
from domain.show import Show
from infrastructure.history import RecordedHistory


def test_pending_counts_the_events_of_the_topics_after_a_position_up_to_a_cap() -> None:
    app = BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    show = Show.schedule("s1", "Hamlet", "2027-01-01T20:00:00+00:00", ["A1", "A2", "A3"], 1)
    for number in range(3):
        show.reserve_or_wait(f"r{number}", [f"A{number + 1}"])
    app.save(show)  # positions 1 (scheduled), 2 to 4 (reserved)
    history = RecordedHistory(app)
    reserved = ["domain.show:Show.SeatsReserved"]

    count, first = history.pending(1, reserved, 10)
    capped, _ = history.pending(0, [], 2)
    none = history.pending(4, [], 10)

    assert count == 3
    assert first is not None
    assert first.id == 2
    assert capped == 2
    assert none == (0, None)
