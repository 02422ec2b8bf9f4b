"""A short chaos run inside ``make test``: every fault of ``make chaos``, a small load.

``make chaos`` runs the same thing at full size (``tests/chaos/run.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.run import PARTS, Plan, run
from tests.support import servers

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


@pytest.mark.parametrize("transport", ["amqp", "filesystem"])
def test_a_short_chaos_run_balances_the_books(
    server_database_url: str, broker_url: str, tmp_path: Path, transport: str
) -> None:
    plan = Plan(
        reservations=48,
        clients=8,
        shows=2,
        seats_per_show=10,
        seed=7,
        transport=transport,
        outage_seconds=5,
        server_restarts=servers.available(),
        fault_gap=2.5,
    )

    report = run(plan, server_database_url, broker_url, tmp_path)

    assert report["problems"] == []
    assert report["balanced"]
    assert report["commands"] >= 2 * plan.reservations
    assert report["serve_exit_status"] == 0
    killed = {f["target"] for f in report["faults"] if f["fault"] == "kill"}
    assert killed == set(PARTS)
    assert report["restarts"] >= len(PARTS)
