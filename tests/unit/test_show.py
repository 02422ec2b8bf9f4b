"""Show: given events, when a command, then events (or a domain error)."""

from __future__ import annotations

import pytest

from domain.show import (
    InvalidSeatMapError,
    SeatNotHeldError,
    Show,
    ShowCancelledError,
    UnknownSeatError,
)
from tests.support.given import given


def scheduled_show(seats: tuple[str, ...] = ("A1", "A2", "A3")) -> Show:
    """Given a show scheduled with ``seats``."""
    return given(
        lambda: Show.schedule("s1", "Hamlet", "2027-01-01T20:00:00+00:00", list(seats), 4500)
    ).aggregate


def event_names(show: Show) -> list[str]:
    return [type(e).__name__ for e in show.collect_events()]


def test_scheduling_a_show_records_its_seat_map_and_price() -> None:
    show = Show.schedule("s1", "Hamlet", "2027-01-01T20:00:00+00:00", ["A1", "A2"], 4500)

    assert event_names(show) == ["ShowScheduled"]
    assert show.id == Show.create_id("s1")
    assert show.available == ["A1", "A2"]
    assert show.status == "scheduled"


@pytest.mark.parametrize(
    ("seats", "price", "message"),
    [([], 100, "at least one seat"), (["A1", "A1"], 100, "A1"), (["A1"], -1, "negative")],
)
def test_a_show_needs_a_valid_seat_map_and_price(
    seats: list[str], price: int, message: str
) -> None:
    with pytest.raises(InvalidSeatMapError, match=message):
        Show.schedule("s1", "Hamlet", "2027-01-01T20:00:00+00:00", seats, price)


def test_reserving_free_seats_holds_them_for_the_reservation() -> None:
    show = scheduled_show()

    assert show.reserve_or_wait("r1", ["A1", "A2"]) is True

    assert event_names(show) == ["SeatsReserved"]
    assert show.held == {"A1": "r1", "A2": "r1"}
    assert show.available == ["A3"]


def test_reserving_a_held_seat_joins_the_waiting_list_once_and_holds_nothing() -> None:
    show = scheduled_show()
    show.reserve_or_wait("r1", ["A1"])
    show.collect_events()

    assert show.reserve_or_wait("r2", ["A1", "A2"]) is False
    assert show.reserve_or_wait("r2", ["A1", "A2"]) is False

    assert event_names(show) == ["CustomerJoinedWaitingList"]
    assert show.held == {"A1": "r1"}
    assert show.waiting_ids == ["r2"]


def test_freed_seats_are_held_for_the_first_in_line_whose_seats_are_all_free() -> None:
    show = scheduled_show()
    show.reserve_or_wait("r1", ["A1", "A2"])
    show.reserve_or_wait("r2", ["A1", "A2"])  # waits for both
    show.reserve_or_wait("r3", ["A2"])  # waits for A2 only
    show.reserve_or_wait("r4", ["A3"])
    show.reserve_or_wait("r5", ["A3"])
    show.collect_events()

    assert show.release_seats("r1") == ["A1", "A2"]
    assert show.offer_free_seats() == ["r2"]

    assert show.held == {"A1": "r2", "A2": "r2", "A3": "r4"}
    assert show.waiting_ids == ["r3", "r5"]
    assert event_names(show) == [
        "SeatsReleased",
        "CustomerLeftWaitingList",
        "SeatsReserved",
    ]
    assert show.offer_free_seats() == []


def test_leaving_the_waiting_list_is_a_no_op_when_not_on_it() -> None:
    show = scheduled_show()
    show.reserve_or_wait("r1", ["A1"])
    show.reserve_or_wait("r2", ["A1"])
    show.collect_events()

    show.leave_waiting_list("r2")
    show.leave_waiting_list("r2")

    assert event_names(show) == ["CustomerLeftWaitingList"]
    assert show.waiting_ids == []


def test_a_cancelled_show_offers_no_seats_to_those_waiting() -> None:
    show = scheduled_show()
    show.reserve_or_wait("r1", ["A1"])
    show.reserve_or_wait("r2", ["A1"])
    show.cancel()
    show.release_seats("r1")

    assert show.offer_free_seats() == []
    assert show.waiting_ids == ["r2"]


def test_reserving_an_unknown_seat_breaks_a_rule() -> None:
    with pytest.raises(UnknownSeatError, match="Z9"):
        scheduled_show().reserve_or_wait("r1", ["A1", "Z9"])


def test_selling_turns_held_seats_into_sold_seats() -> None:
    show = scheduled_show()
    show.reserve_or_wait("r1", ["A1"])
    show.collect_events()

    show.sell_seats("r1")

    assert event_names(show) == ["SeatsSold"]
    assert show.sold == {"A1": "r1"}
    assert show.held == {}


def test_selling_without_held_seats_is_a_conflict() -> None:
    with pytest.raises(SeatNotHeldError):
        scheduled_show().sell_seats("r1")


def test_releasing_frees_held_and_sold_seats_and_is_a_no_op_when_there_are_none() -> None:
    show = scheduled_show()
    show.reserve_or_wait("r1", ["A1"])
    show.sell_seats("r1")
    show.reserve_or_wait("r1", ["A2"])
    show.collect_events()

    assert show.release_seats("r1") == ["A1", "A2"]
    assert event_names(show) == ["SeatsReleased"]
    assert show.release_seats("r1") == []
    assert event_names(show) == []
    assert show.available == ["A1", "A2", "A3"]


def test_a_cancelled_show_takes_no_reservations_and_cannot_be_cancelled_again() -> None:
    show = scheduled_show()

    show.cancel()

    assert event_names(show) == ["ShowCancelled"]
    assert show.status == "cancelled"
    with pytest.raises(ShowCancelledError):
        show.reserve_or_wait("r1", ["A1"])
    with pytest.raises(ShowCancelledError):
        show.cancel()
