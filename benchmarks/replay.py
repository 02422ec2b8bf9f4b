"""(g) ``sagas replay`` over a log of thousands of sagas: sagas replayed per second.

The sagas are recorded by the service's own pipeline and saga runner run in-process
(``tests.support.world``): paid, declined, flaky, dead-lettered then expired by their
deadline, and waitlisted reservations, over many shows. They are recorded in memory
(fast), then their events are copied into PostgreSQL in large transactions. The replay
then reads them back from PostgreSQL with the deployed saga class, as ``boxoffice
sagas replay --all`` does, and must find every one identical.

Run alone: ``scripts/test-services.sh .venv/bin/python -m benchmarks.replay``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from application.event_log import BoxofficeApplication
from application.saga_replay import SagaReplayer
from application.saga_replay_report import ReplaySummary
from domain.reservation_saga import ReservationSaga
from infrastructure.event_store import build_application
from infrastructure.history import RecordedHistory
from infrastructure.settings import Settings
from interfaces.bootstrap import migrate
from tests.conftest import fresh_database
from tests.support.world import DEADLINE, World

CARDS = ("tok_approve", "tok_decline", "tok_flaky", "tok_outage")
SEATS_PER_SHOW = 8
# Two more reservations per show than seats: they wait on the waiting list.
WAITING_PER_SHOW = 2
# Events copied into PostgreSQL per transaction.
COPY_BATCH = 5_000


def seed(url: str, sagas: int) -> list[UUID]:
    """Record about ``sagas`` sagas into the event store at ``url``; returns their ids."""
    memory = BoxofficeApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    ids = record(memory, sagas)
    app = build_application(Settings(database_url=url))
    position = 0
    while batch := memory.recorder.select_notifications(
        start=position, limit=COPY_BATCH, inclusive_of_start=False
    ):
        app.recorder.insert_events(
            [StoredEvent(n.originator_id, n.originator_version, n.topic, n.state) for n in batch]
        )
        position = batch[-1].id
    app.close()
    memory.close()
    return ids


def record(app: BoxofficeApplication, sagas: int) -> list[UUID]:
    """Record about ``sagas`` sagas in ``app``; returns their ids."""
    world = World(app)
    ids: list[UUID] = []
    show = 0
    while len(ids) < sagas:
        show_id = f"show-{show}"
        seats = [f"A{n}" for n in range(SEATS_PER_SHOW)]
        world.create_show(seats, price_cents=1500, show_id=show_id)
        for n, seat in enumerate(seats + seats[:WAITING_PER_SHOW]):
            reservation_id = f"r-{show}-{n}"
            world.place(reservation_id, [seat], CARDS[n % len(CARDS)], show_id=show_id)
            ids.append(ReservationSaga.create_id(reservation_id))
        show += 1
    world.pass_time(DEADLINE)  # the dead-lettered charges' sagas expire
    return ids


def replay(url: str, ids: list[UUID]) -> dict[str, Any]:
    """Replay every saga with a fresh reader; sagas/s and the verdicts."""
    app = build_application(Settings(database_url=url))
    world = World(app)  # only for its pipeline (the registry of command types)
    replayer = SagaReplayer(RecordedHistory(app), world.pipeline, world.pipeline.catalog.sagas)
    summary = ReplaySummary()
    started = time.perf_counter()
    for saga in replayer.replay_all(ids):
        summary.add(saga)
    seconds = time.perf_counter() - started
    app.close()
    return {
        "sagas": summary.replayed,
        "identical": summary.identical,
        "diverged": summary.diverged,
        "errors": summary.errors,
        "seconds": round(seconds, 3),
        "sagas_per_s": round(summary.replayed / seconds, 1),
    }


def measure(server: str, sagas: int = 3_000) -> dict[str, Any]:
    """Seed a fresh database with ``sagas`` sagas and replay them all."""
    with fresh_database(server) as url:
        migrate(Settings(database_url=url))
        started = time.perf_counter()
        ids = seed(url, sagas)
        print(
            f"bench: {len(ids)} sagas recorded in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        return replay(url, ids)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sagas", type=int, default=3_000)
    args = parser.parse_args()
    result = measure(os.environ["TEST_DATABASE_URL"], args.sagas)
    print(json.dumps(result, indent=2))
    return 0 if result["identical"] == result["sagas"] else 1


if __name__ == "__main__":
    sys.exit(main())
