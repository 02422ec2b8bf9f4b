"""Views and the saga runner split into segments over PostgreSQL and RabbitMQ: two
projectors and two saga runners share the segments, every reservation ends as it does
whole, each view equals its rebuild, and the segments' positions survive a swap."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import Tracking

from application.event_log import BoxofficeApplication
from application.operations import views as view_ops
from domain.reservation import Reservation
from infrastructure.event_store import build_view
from infrastructure.lease import lease_status
from infrastructure.settings import Settings
from interfaces.http import create_app
from projections.command_registry import CommandRegistryProjection
from projections.shows import ShowsView
from projections.views import PROJECTIONS
from tests.integration.conftest import Stack
from tests.support.processes import running, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]
SPLIT = {
    "VIEW_SEGMENTS": "2",
    "SAGA_SEGMENTS": "2",
    "PART_LEASE_SECONDS": "2",
    "PART_LEASE_RENEW_SECONDS": "0.5",
}
APP = BoxofficeApplication.name


def test_a_new_segment_starts_where_the_view_was_and_never_moves_a_document_back(
    settings: Settings,
) -> None:
    view = build_view(settings, "shows", ShowsView)
    key = uuid.uuid4()
    values = dict.fromkeys(ShowsView.columns)
    try:
        view.upsert_many({key: ({"v": "at 9"}, values, 9)}, Tracking(APP, 9))
        view.segments = 2

        # The view was whole at 9: the first segment to start puts every segment of
        # the split there at once, and the other resumes from its own row.
        assert view.view_position(APP) is None
        assert view.resume_from(f"{APP}#0/2") == 9
        assert view.segment_positions(APP) == {"#0/2": 9, "#1/2": 9}
        assert view.resume_from(f"{APP}#1/2") == 9
        assert view.view_position(APP) == 9
        # An event applied again by a segment writes its position, not an older row.
        view.upsert_many({key: ({"v": "at 4"}, values, 4)}, Tracking(f"{APP}#1/2", 10))
        assert view.get(key) == {"v": "at 9", "position": 9}
        assert view.segment_positions(APP) == {"#0/2": 9, "#1/2": 10}
    finally:
        view.datastore.close()


def test_a_segment_that_starts_after_the_other_moved_on_still_applies_its_own_events(
    settings: Settings,
) -> None:
    view = build_view(settings, "shows", ShowsView)
    view.segments = 2
    values = dict.fromkeys(ShowsView.columns)
    try:
        # A fresh split: segment 0 starts and applies up to 50 before segment 1 starts
        # (its process started later, or took the segment over from one that had not
        # written a position yet).
        assert view.resume_from(f"{APP}#0/2") == 0
        view.upsert_many({uuid.uuid4(): ({"v": 1}, values, 50)}, Tracking(f"{APP}#0/2", 50))

        # Segment 1's events before 50 are still to apply: it starts from the beginning.
        assert view.resume_from(f"{APP}#1/2") == 0
        assert view.view_position(APP) == 0
    finally:
        view.datastore.close()


def new_show(stack: Stack, show_id: str, seats: list[str]) -> None:
    created = stack.submit(
        "CreateShow",
        show_id=show_id,
        title="Split",
        starts_at="2027-01-01T20:00:00Z",
        seats=seats,
        price_cents=1000,
    )
    assert stack.outcome(created.command.id).status == "succeeded"


def reservation_status(stack: Stack, reservation_id: str) -> str | None:
    try:
        found: Any = stack.container.app.repository.get(Reservation.create_id(reservation_id))
    except AggregateNotFoundError:
        return None  # not placed yet
    return str(found.status)


def test_two_projectors_and_two_saga_runners_share_the_segments_and_agree_with_a_rebuild(
    database_url: str, broker_url: str, queue_name: str, tmp_path: Path
) -> None:
    # The test's own reads (the registry, /projections) know the views are split.
    stack = Stack(database_url, broker_url, queue_name, tmp_path, view_segments=2)
    pids = {
        name: stack.process(name.rstrip("-12"), name, **SPLIT)
        for name in (
            "relay",
            "worker",
            "projector-1",
            "projector-2",
            "saga-runner-1",
            "saga-runner-2",
        )
    }
    parts = list(pids.values())
    client = create_app(stack.container).test_client()

    def holders(prefix: str) -> dict[str, int]:
        datastore: Any = stack.container.app.recorder.datastore  # type: ignore[attr-defined]
        return {
            lease["name"]: int(lease["holder"].rsplit(":", 2)[1])
            for lease in lease_status(datastore)
            if lease["name"].startswith(prefix) and lease["expires_in_seconds"] > 0
        }

    with running(*parts):
        seats = [f"A{n}" for n in range(1, 13)]
        new_show(stack, "split", seats)
        reservations = [f"r-{n}-{uuid.uuid4().hex[:6]}" for n in range(12)]
        for reservation_id, seat in zip(reservations, seats, strict=True):
            stack.submit(
                "PlaceReservation",
                reservation_id=reservation_id,
                show_id="split",
                customer_id="c1",
                seats=[seat],
                card_token="tok_approve",
            )
        wait_until(
            lambda: all(reservation_status(stack, r) == "confirmed" for r in reservations),
            60,
            "every reservation confirmed with the sagas split in two",
        )
        # Both processes of each part hold segments: the work is shared, not stood by.
        projector_pids = {pids["projector-1"].pid, pids["projector-2"].pid}
        runner_pids = {pids["saga-runner-1"].pid, pids["saga-runner-2"].pid}
        wait_until(
            lambda: set(holders("projection:").values()) == projector_pids,
            30,
            "the views' segments spread over both projectors",
        )
        wait_until(
            lambda: set(holders("saga-runner#").values()) == runner_pids,
            30,
            "the saga runner's segments spread over both runners",
        )
        assert set(holders("projection:")) == {
            f"projection:{p.name}#{i}/2" for p in PROJECTIONS for i in range(2)
        }

        items = client.get("/projections").get_json()["items"]
        for item in items:
            assert [s["segment"] for s in item["segments"]] == ["#0/2", "#1/2"]
            assert item["position"] == min(s["position"] for s in item["segments"])
            assert all(s["lease"]["holder"] for s in item["segments"])

        # Each view, split, equals its rebuild from zero; the swap keeps the segments'
        # positions, and they go on applying into the new table.
        for projection in PROJECTIONS:
            done = view_ops.rebuild(stack.container.operator, projection, swap=True)
            assert done["diff"]["differing"] == 0, (projection.name, done)
            assert done["swapped_at"] is not None
        late = stack.submit(
            "CreateShow",
            show_id="after-swap",
            title="Late",
            starts_at="2027-01-01T20:00:00Z",
            seats=["A1"],
            price_cents=1000,
        ).command.id
        wait_until(
            lambda: (client.get(f"/commands/{late}").get_json() or {}).get("status") == "succeeded",
            30,
            "the swapped registry's segments to apply a new command",
        )
        registry = stack.container.read_models
        assert registry.segment_positions(CommandRegistryProjection.name).keys() == {
            "#0/2",
            "#1/2",
        }
