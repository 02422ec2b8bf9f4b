"""Leases on PostgreSQL: one holder works, a standby waits and takes over when the lease
lapses, and a holder that lost its lease writes nothing after its successor started."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from itertools import islice
from pathlib import Path
from typing import Any

import psycopg
import psycopg.rows
import pytest
from eventsourcing.persistence import Tracking

from application.event_log import BoxofficeApplication
from infrastructure.event_store import build_tracker, build_view
from infrastructure.lease import (
    Lease,
    LeaseLostError,
    LeaseSettings,
    holder_name,
    lease_status,
)
from infrastructure.leased_work import LeaseFence, run_leased
from infrastructure.settings import Settings
from interfaces.http import create_app
from projections.shows import ShowsView
from tests.integration.conftest import Stack
from tests.support.commands import Tally
from tests.support.processes import ROOT, running, wait_until
from tests.support.submit import create_show

pytestmark = pytest.mark.postgres
FAST = LeaseSettings(ttl=2.0, renew_every=0.5, statement_timeout=1.0)


def lease(settings: Settings, name: str = "relay", who: str = "a") -> Lease:
    return Lease(settings.database.url(), name, holder_name(who), FAST)


def lapse(settings: Settings, name: str) -> None:
    """As if the holder had been silent past its lease: the database's clock decides."""
    with psycopg.connect(settings.database.url(), autocommit=True) as conn:
        conn.execute(
            "UPDATE leases SET expires_at = clock_timestamp() - interval '1 second' "
            "WHERE name = %s",
            (name,),
        )


def lapse_then_say(settings: Settings, done: threading.Event) -> None:
    lapse(settings, "relay")
    done.set()


def position(settings: Settings) -> int | None:
    tracker = build_tracker(settings, "relay")
    try:
        found: int | None = tracker.max_tracking_id(BoxofficeApplication.name)
        return found
    finally:
        tracker.datastore.close()


def test_one_holder_at_a_time_and_a_lapsed_lease_goes_to_the_next_term(
    settings: Settings,
) -> None:
    first, second = lease(settings, who="a"), lease(settings, who="b")
    try:
        assert first.try_acquire()
        assert not second.try_acquire()
        assert first.renew()

        lapse(settings, "relay")

        assert not first.renew()  # the database no longer names it
        assert second.try_acquire()
        assert second.token == (first.token or 0) + 1
        (row,) = [r for r in lease_status_of(settings) if r["name"] == "relay"]
        assert row["holder"] == second.holder
        assert row["token"] == second.token
    finally:
        first.close()
        second.close()


def test_a_lease_released_on_a_clean_stop_goes_to_a_standby_at_once(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="infrastructure.lease")
    first, second = lease(settings, who="a"), lease(settings, who="b")
    try:
        assert first.try_acquire()
        first.release()

        assert second.try_acquire()  # well before the lease's two seconds are up
        assert "not released" not in caplog.text
    finally:
        first.close()
        second.close()


def lease_status_of(settings: Settings) -> list[dict[str, Any]]:
    tracker = build_tracker(settings, "relay")
    try:
        return lease_status(tracker.datastore)
    finally:
        tracker.datastore.close()


def test_a_holder_that_lost_its_lease_writes_nothing_after_its_successor_took_it(
    settings: Settings,
) -> None:
    old, successor = lease(settings, who="old"), lease(settings, who="new")
    tracker = build_tracker(settings, "relay")
    try:
        assert old.try_acquire()
        tracker.fence = old.fence
        tracker.insert_tracking(Tracking(BoxofficeApplication.name, 1))

        lapse(settings, "relay")  # the old holder froze, say, past its lease
        assert successor.try_acquire()

        with pytest.raises(LeaseLostError):
            tracker.insert_tracking(Tracking(BoxofficeApplication.name, 2))
        assert position(settings) == 1
        assert old.term.is_set()  # its work stops
        with pytest.raises(LeaseLostError):
            old.guard()
    finally:
        tracker.datastore.close()
        old.close()
        successor.close()


def test_a_take_over_waits_for_the_holder_s_write_in_flight_then_follows_it(
    settings: Settings,
) -> None:
    """The interleaving forced: the holder's write has passed its fence and not yet
    committed when its lease lapses. The successor cannot take the lease until that
    write commits, so the write lands before the successor's term, which sees it."""
    old, successor = lease(settings, who="old"), lease(settings, who="new")
    try:
        assert old.try_acquire()
        with psycopg.connect(settings.database.url()) as conn:
            with conn.transaction(), conn.cursor(row_factory=psycopg.rows.dict_row) as curs:
                old.fence(curs)
                lapse_done = threading.Event()
                threading.Thread(target=lapse_then_say, args=(settings, lapse_done)).start()
                # The lapse itself waits for the fence's lock, as a taker does.
                assert not lapse_done.wait(0.5)
                with pytest.raises(psycopg.errors.LockNotAvailable):
                    successor.try_acquire()
                curs.execute(
                    "INSERT INTO relay_tracking VALUES (%s, 7) ON CONFLICT (application_name) "
                    "DO UPDATE SET notification_id = 7",
                    (BoxofficeApplication.name,),
                )
            assert lapse_done.wait(5)
        assert successor.try_acquire()
        assert position(settings) == 7
    finally:
        old.close()
        successor.close()


def test_a_standby_says_who_holds_the_lease_and_takes_over_when_it_lapses(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    holder = lease(settings, who="holder")
    assert holder.try_acquire()
    standby = lease(settings, who="standby")
    stop = threading.Event()
    worked = threading.Event()
    took_over_at: list[float] = []

    def work(term: threading.Event) -> None:
        took_over_at.append(time.monotonic())
        worked.set()
        term.wait()

    caplog.set_level(logging.INFO, logger="infrastructure.leased_work")
    thread = threading.Thread(target=run_leased, args=(standby, work, stop))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while "waits as a standby" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"held by {holder.holder}: {standby.holder} waits as a standby" in caplog.text
        assert not worked.is_set()

        # The holder dies without a word: its lease lapses by the database's clock.
        holder.close()
        lapsed_by = time.monotonic() + FAST.ttl
        assert worked.wait(FAST.ttl + 3)
        assert took_over_at[0] - lapsed_by < FAST.renew_every + 0.5
    finally:
        stop.set()
        thread.join(10)
    # A clean stop gives the lease up at once.
    (row,) = [r for r in lease_status_of(settings) if r["name"] == "relay"]
    assert row["expires_in_seconds"] <= 0


def test_a_holder_whose_renewals_stop_loses_the_lease_on_its_own_clock(
    settings: Settings,
) -> None:
    held = lease(settings)
    try:
        assert held.try_acquire()
        assert held.held_locally()
        held._confirmed -= FAST.ttl  # no renewal confirmed for a whole lease
        assert not held.held_locally()
        with pytest.raises(LeaseLostError):
            held.guard()
    finally:
        held.close()


@pytest.mark.rabbitmq
def test_a_relay_frozen_past_its_lease_is_replaced_and_does_no_work_when_resumed(
    stack: Stack,
) -> None:
    fast = {"PART_LEASE_SECONDS": "2", "PART_LEASE_RENEW_SECONDS": "0.5"}
    worker = stack.process("worker")
    first = stack.process("relay", "relay-1", **fast)
    second = stack.process("relay", "relay-2", **fast)
    with running(worker, first):
        first.wait_for_output("lease relay taken")
        with running(second):
            second.wait_for_output("waits as a standby")
            keys = iter(range(100))

            def bump_three() -> None:
                accepted = [stack.submit("Bump", f"k{n}", key=f"t{n}") for n in islice(keys, 3)]
                for acceptance in accepted:
                    assert stack.outcome(acceptance.command.id).status == "succeeded"

            bump_three()
            os.kill(first.pid, signal.SIGSTOP)
            try:
                second.wait_for_output("lease relay taken", timeout=10)
                bump_three()
            finally:
                os.kill(first.pid, signal.SIGCONT)
            first.wait_for_output("lease relay lost")
            bump_three()
            wait_until(
                lambda: first.output().count("waits as a standby") >= 1, 10, "relay-1 to stand by"
            )

    # Each command published once (a second message would be a skipped delivery), each
    # effect once, and the resumed relay stopped before writing anything.
    assert worker.output().count(": skipped") == 0
    assert all(tally(stack, f"t{n}") == 1 for n in range(9))
    assert "nothing written" not in first.output()


def tally(stack: Stack, key: str) -> int:
    found: Tally = stack.container.app.repository.get(Tally.create_id(key))
    return found.count


def test_health_projections_and_the_cli_name_each_lease_s_holder_and_age(
    database_url: str, tmp_path: Path
) -> None:
    stack = Stack(database_url, "memory://", f"lease.{uuid.uuid4().hex[:8]}", tmp_path)
    projector = stack.process("projector")
    client = create_app(stack.container).test_client()

    def views() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = client.get("/projections").get_json()["items"]
        return found

    with running(projector):
        wait_until(lambda: all(v["lease"] for v in views()), 30, "every view's lease taken")
        items = views()
        assert {v["lease"]["name"] for v in items} == {f"projection:{v['name']}" for v in items}
        assert all(f":{projector.pid}:" in v["lease"]["holder"] for v in items)
        assert all(v["lease"]["age_seconds"] >= 0 for v in items)
        health = client.get("/health").get_json()
        assert {f"projection:{v['name']}" for v in items} <= {x["name"] for x in health["leases"]}
        printed = subprocess.run(
            [sys.executable, "-m", "interfaces.cli.main", "projections", "status", "--json"],
            env=stack.env(),
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
    listed = json.loads(printed.stdout)["items"]
    assert all(f":{projector.pid}:" in v["lease"]["holder"] for v in listed)


def test_two_projectors_split_the_views_and_one_takes_them_all_when_the_other_goes(
    database_url: str, tmp_path: Path
) -> None:
    stack = Stack(database_url, "memory://", f"shares.{uuid.uuid4().hex[:8]}", tmp_path)
    fast = {"PART_LEASE_SECONDS": "2", "PART_LEASE_RENEW_SECONDS": "0.5"}
    first = stack.process("projector", "projector-1", **fast)
    second = stack.process("projector", "projector-2", **fast)
    client = create_app(stack.container).test_client()

    def holders() -> dict[str, str]:
        items = client.get("/projections").get_json()["items"]
        return {v["name"]: (v["lease"] or {}).get("holder", "") for v in items}

    def pids(found: dict[str, str]) -> list[int]:
        return [int(h.rsplit(":", 2)[1]) for h in found.values() if h]

    with running(first):
        wait_until(lambda: set(pids(holders())) == {first.pid}, 30, "projector-1 all views")
        with running(second):
            # The newcomer gets its share: the first gives up the views beyond its own.
            wait_until(
                lambda: sorted(set(pids(holders()))) == sorted({first.pid, second.pid}),
                30,
                "the views split between the two",
            )
            split = pids(holders())
            assert abs(split.count(first.pid) - split.count(second.pid)) <= 1
            # Views applied by either keep up: the registry, whoever holds it, has it.
            accepted = create_show(stack.container.pipeline, "split").command.id
            wait_until(
                lambda: client.get(f"/commands/{accepted}").status_code == 200,
                30,
                "the split registry to apply the accept",
            )
        # The second stopped cleanly: its leases were given up, the first takes them.
        wait_until(lambda: set(pids(holders())) == {first.pid}, 30, "projector-1 all again")
    assert len(holders()) == len(split)


def test_a_view_s_batch_is_written_in_one_statement_only_while_its_lease_is_held(
    settings: Settings,
) -> None:
    old, successor = (
        lease(settings, "projection:shows", "old"),
        lease(settings, "projection:shows", "new"),
    )
    view = build_view(settings, "shows", ShowsView)
    key = uuid.uuid4()
    document = {"show_id": "fenced"}
    values = dict.fromkeys(ShowsView.columns)
    try:
        assert old.try_acquire()
        view.fence = LeaseFence(old)
        view.upsert_many({key: (document, values, 1)}, Tracking(BoxofficeApplication.name, 1))

        lapse(settings, "projection:shows")
        assert successor.try_acquire()

        with pytest.raises(LeaseLostError):
            view.upsert_many({key: (document, values, 2)}, Tracking(BoxofficeApplication.name, 2))
        assert view.max_tracking_id(BoxofficeApplication.name) == 1
        assert view.get(key) == {**document, "position": 1}
        assert old.term.is_set()
    finally:
        view.datastore.close()
        old.close()
        successor.close()
