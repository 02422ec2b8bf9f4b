"""The read side on the in-memory store: the same projections, the same queries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

import pytest
from eventsourcing.persistence import Tracking
from flask.testing import FlaskClient

from application.event_log import BoxofficeApplication
from domain.show import Show
from interfaces.http import create_app
from projections.document_view import InMemoryDocumentView
from projections.shows import ShowsProjection
from tests.support.service import make_container


@pytest.fixture
def counted() -> Iterator[tuple[FlaskClient, list[int]]]:
    """A client over the in-memory store, and a count of reads of the event log."""
    app = BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    calls = [0]
    select = app.recorder.select_notifications

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return select(*args, **kwargs)

    app.recorder.select_notifications = counting  # type: ignore[method-assign]
    container = make_container(app)
    yield create_app(container).test_client(), calls
    container.close()
    app.close()


def test_a_page_checks_its_consistency_in_as_many_queries_as_a_short_one(
    counted: tuple[FlaskClient, list[int]],
) -> None:
    client, calls = counted
    for number in range(60):
        client.put(
            f"/shows/s{number}",
            json={
                "title": "T",
                "starts_at": "2027-01-01T20:00:00Z",
                "seats": ["A1"],
                "price_cents": 1,
            },
        )
    client.get("/commands?limit=1")  # the views catch up with every acceptance

    def queries(limit: int) -> int:
        before = calls[0]
        page = client.get(f"/commands?limit={limit}").get_json()
        assert len(page["items"]) == limit
        assert all(item["projections"]["command_registry"] for item in page["items"])
        return calls[0] - before

    assert queries(50) == queries(5)


class _NoReads:
    """A repository that fails the test if the projection reads the store."""

    def get(self, *_: object, **__: object) -> None:
        raise AssertionError("the projection read the store")


def test_a_projection_applies_a_creation_event_without_reading_the_store() -> None:
    app = BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    show = Show.schedule("s1", "Hamlet", "2027-01-01T20:00:00Z", ["A1", "A2"], 1500)
    app.save(show)
    (created,) = app.repository.event_store.get(show.id)
    view = InMemoryDocumentView()

    ShowsProjection(view, cast(Any, _NoReads())).process_event(created, Tracking(app.name, 1))

    # The document the state loaded from the store gives.
    expected = ShowsProjection.stored(app.repository.get(show.id))
    assert view.get(show.id) == {**expected, "position": 1}


def test_a_command_s_timeline_gives_each_hop_its_time_and_is_asked_for() -> None:
    container = make_container(
        BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    )
    client = create_app(container).test_client()
    accepted = client.put(
        "/shows/s1",
        json={
            "title": "Hamlet",
            "starts_at": "2027-01-01T20:00:00Z",
            "seats": ["A1"],
            "price_cents": 1,
        },
        headers={"Idempotency-Key": "k1"},
    ).get_json()
    command_id = UUID(accepted["command_id"])
    published = datetime.now(UTC)
    received = published + timedelta(milliseconds=3)
    delivered = {"published_at": published.isoformat(), "received_at": received.isoformat()}
    container.pipeline.execute(command_id, 1, "worker-1", delivered=delivered)

    plain = client.get(f"/commands/{command_id}").get_json()
    timed = client.get(f"/commands/{command_id}?timeline=true").get_json()

    assert "timeline" not in plain
    assert plain["attempts"][0]["published_at"] == published.isoformat()
    hops = [(h["hop"], h.get("component"), h.get("view")) for h in timed["timeline"]]
    assert hops == [
        ("accepted", "web", None),
        ("published", "relay", None),
        ("received", "worker-1", None),
        ("started", "worker-1", None),
        ("outcome", "worker-1", None),
        ("visible", "projector", "command_registry"),
    ]
    times = [h["ms"] for h in timed["timeline"]]
    assert times[0] == 0
    assert times[2] - times[1] == pytest.approx(3.0)  # received 3 ms after it was published
    assert times[3:] == sorted(times[3:])  # started, then decided, then visible
    assert timed["timeline"][4]["outcome"] == "succeeded"
    bad = client.get(f"/commands/{command_id}?timeline=yes")
    assert bad.status_code == 400
    assert bad.get_json()["errors"] == [{"location": "query.timeline", "message": "true or false"}]
