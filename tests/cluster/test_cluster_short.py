"""A short cluster run inside ``make test``: seven hosts, the active parts' host cut off
once, each active part and a web host's web process killed, the database's host cut off
and a worker host killed, under a small load (``make test-cluster`` is the full one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.run import Plan
from tests.cluster import netns
from tests.cluster.run import SINGLE_ACTIVE, TAKEOVER_MAX, TAKEOVER_P50, run


def test_the_books_balance_and_standbys_take_over_when_the_active_host_is_cut(
    tmp_path: Path,
) -> None:
    missing = netns.available()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    plan = Plan(
        reservations=60,
        clients=4,
        shows=2,
        seats_per_show=20,
        seed=3,
        transport="amqp",
        outage_seconds=0,
        server_restarts=False,
        fault_gap=1.5,
    )

    report = run(plan, cuts=1, work=tmp_path)

    assert report["problems"] == []
    assert report["balanced"]
    assert report["commands"] >= 2 * plan.reservations
    faults = report["faults"]
    assert [f["target"] for f in faults if f["fault"] == "cut"].count("db") == 1
    assert len([f for f in faults if f["fault"] == "cut" and f["target"] != "db"]) == 1
    killed = {f["target"].split(".")[1] for f in faults if f["fault"] == "kill"}
    assert killed == {*SINGLE_ACTIVE, "web"}
    assert [f["target"] for f in faults if f["fault"] == "kill-host"] == ["worker-b"]
    takeovers = report["takeovers"]
    # The cut hands at least the relay's and the saga runner's leases to the standbys,
    # and each part killed hands its own.
    assert takeovers["count"] >= 5
    assert takeovers["p50_seconds"] <= TAKEOVER_P50
    assert takeovers["max_seconds"] <= TAKEOVER_MAX
