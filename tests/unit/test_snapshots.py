"""Snapshots: a long history is read from its latest snapshot, and reads the same."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock
from uuid import UUID

import pytest
from eventsourcing.application import Repository
from eventsourcing.persistence import Mapper

from application.event_log import BoxofficeApplication, SnapshottingRepository
from domain.show import Show

INTERVAL = 10


def application(interval: int = INTERVAL) -> BoxofficeApplication:
    return BoxofficeApplication(
        env={"PERSISTENCE_MODULE": "eventsourcing.popo", "SNAPSHOT_INTERVAL": str(interval)}
    )


def sold_show(app: BoxofficeApplication, reservations: int, save_every: int = 1) -> Show:
    """A show that sold ``reservations`` seats (two events each), saved every
    ``save_every`` sales (so that one save may cross a multiple of the interval)."""
    seats = [f"S{n}" for n in range(reservations + 1)]
    show = Show.schedule("s1", "Hamlet", "2027-01-01T20:00:00+00:00", seats, 4500)
    app.save(show)
    for n in range(reservations):
        show.reserve_or_wait(f"r{n}", [f"S{n}"])
        show.sell_seats(f"r{n}")
        if (n + 1) % save_every == 0:
            app.save(show)
    app.save(show)
    return show


def snapshot_versions(app: BoxofficeApplication, aggregate_id: UUID) -> list[int]:
    assert app.snapshots is not None
    return [s.originator_version for s in app.snapshots.get(aggregate_id)]


def state(show: Show) -> dict[str, Any]:
    return {k: v for k, v in vars(show).items() if k != "_pending_events"}


def replayed(app: BoxofficeApplication, aggregate_id: UUID, version: int | None = None) -> Any:
    """The aggregate replayed from its first event by the library's own repository."""
    return Repository(event_store=app.events).get(aggregate_id, version=version)


def decoded(read: Callable[[], Any]) -> tuple[Any, int]:
    """What ``read()`` returns, and how many stored events and snapshots it decoded."""
    decode = Mapper.to_domain_event
    with mock.patch.object(Mapper, "to_domain_event", autospec=True, side_effect=decode) as spy:
        found = read()
    return found, spy.call_count


@pytest.mark.parametrize("save_every", [1, 7])
def test_a_save_takes_a_snapshot_at_each_multiple_of_the_interval(save_every: int) -> None:
    app = application()

    show = sold_show(app, 25, save_every)  # version 51

    assert snapshot_versions(app, show.id) == [10, 20, 30, 40, 50]


def test_a_long_history_is_read_from_its_latest_snapshot_and_reads_the_same() -> None:
    app = application()
    show = sold_show(app, 40)  # version 81: a snapshot at 80

    found, decodes = decoded(lambda: app.repository.get(show.id))

    # The snapshot, and the one event after it: not 81 events.
    assert decodes == 2
    assert state(found) == state(show) == state(replayed(app, show.id))
    assert isinstance(app.repository, SnapshottingRepository)


def test_a_short_history_is_read_in_one_read_without_a_snapshot() -> None:
    app = application()
    show = sold_show(app, 3)  # version 7

    assert app.snapshots is not None
    with mock.patch.object(app.snapshots, "get", wraps=app.snapshots.get) as snapshots:
        found: Show = app.repository.get(show.id)

    assert snapshots.call_count == 0
    assert state(found) == state(show)
    assert snapshot_versions(app, show.id) == []


@pytest.mark.parametrize("version", [1, 9, 10, 11, 20, 35, 49, 50, 51])
def test_a_past_version_reads_as_the_events_up_to_it_made_it(version: int) -> None:
    app = application()
    show = sold_show(app, 25)

    found: Show = app.repository.get(show.id, version=version)

    assert found.version == version
    assert state(found) == state(replayed(app, show.id, version))


def test_without_its_snapshots_a_long_history_is_read_from_the_start() -> None:
    app = application()
    show = sold_show(app, 30)  # snapshots at 10 .. 60
    lost = application()  # its snapshot store is empty
    lost.events.recorder = app.recorder

    found, decodes = decoded(lambda: lost.repository.get(show.id))

    assert state(found) == state(show)
    assert decodes == 61  # every event, once: none of the first read is decoded


def test_a_snapshot_that_fails_fails_nothing_saved() -> None:
    app = application()
    with mock.patch.object(app, "take_snapshot", side_effect=RuntimeError("disk full")):
        show = sold_show(app, 6)  # a snapshot due at 10

    assert app.repository.get(show.id).version == 13
    assert snapshot_versions(app, show.id) == []


def test_an_interval_of_zero_takes_no_snapshot_and_reads_every_event() -> None:
    app = application(0)

    show = sold_show(app, 15)

    assert snapshot_versions(app, show.id) == []
    assert type(app.repository) is Repository
    assert state(app.repository.get(show.id)) == state(show)
