"""Quick load of the command pipeline on real PostgreSQL, RabbitMQ, gunicorn and Celery.

Measures, in one run:
- baseline: ``CommandPipeline.accept`` called in-process (the event-store write alone);
- accepted/s: ``PUT /shows/{id}`` over HTTP answered 202 (validate + durable write);
- end-to-end/s: from the first request until every command is ``succeeded``;
- accept → succeeded latency under that burst (mostly queueing), p50 and p99;
- light load: one client, one command at a time with ``Prefer: wait=5``, round trip;
- registry visibility at light load: from sending a command until ``GET /commands/{id}``
  shows it ``succeeded`` (the read of the registry view, with its consistency token).
HTTP figures are also given as ratios to the baseline, so they compare across machines.

Run by ``make bench`` (which provides the servers); sized for 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from eventsourcing.persistence import Tracking

from application.pipeline import Submission
from application.shows import CreateShow
from infrastructure.event_store import build_tracker, migrate
from infrastructure.settings import Settings
from interfaces.bootstrap import bootstrap
from tests.conftest import fresh_database
from tests.e2e.conftest import free_port
from tests.support.processes import ServiceProcess, http_ready, running, service_env, wait_until

SHOW = {"title": "Bench", "starts_at": "2027-01-01T20:00:00Z", "seats": ["A1"], "price_cents": 1}


def get_json(url: str, headers: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        body: dict[str, Any] = json.loads(response.read())
        return body


def put_show(base: str, show_id: str, wait: bool = False) -> tuple[int, str, float]:
    body = json.dumps(SHOW).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": show_id}
    if wait:
        headers["Prefer"] = "wait=5"
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{base}/shows/{show_id}", data=body, method="PUT", headers=headers
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        answer = json.loads(response.read())
        token = answer.get("consistency_token") or ""
        return response.status, f"{answer['command_id']} {token}", time.time()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=600)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--light", type=int, default=100, help="commands sent one at a time")
    args = parser.parse_args()
    server, broker = os.environ["TEST_DATABASE_URL"], os.environ["TEST_BROKER_URL"]
    results: dict[str, Any] = {}
    with fresh_database(server) as database_url:
        queue = f"bench.{uuid.uuid4().hex[:8]}"
        settings = Settings(database_url=database_url, broker_url=broker, command_queue=queue)
        migrate(settings)
        container = bootstrap(settings)
        pipeline = container.pipeline
        spec = container.registry.get("CreateShow")

        started = time.perf_counter()
        for i in range(args.commands):
            payload = CreateShow.model_validate({**SHOW, "show_id": f"base-{i}"})
            pipeline.accept(Submission(spec, payload, "bench", f"base-{i}"))
        baseline = args.commands / (time.perf_counter() - started)
        results["baseline_in_process_accepts_per_s"] = round(baseline, 1)
        # The baseline's commands are not executed: publish nothing for them.
        tracker = build_tracker(settings, "relay")
        position = container.app.recorder.max_notification_id()
        assert position is not None
        tracker.insert_tracking(Tracking(container.app.name, position))

        port = free_port()
        env = service_env(
            database_url, broker, queue, WEB_PORT=str(port), WEB_WORKERS="2", COMMAND_MODULES=""
        )
        # The baseline's commands were never published; the projector must still project them.
        log_dir = Path(tempfile.mkdtemp(prefix="bench-"))
        parts = ("web", "worker", "relay", "projector")
        processes = [ServiceProcess(p, env, log_dir) for p in parts]
        with running(*processes):
            base = f"http://127.0.0.1:{port}"
            wait_until(http_ready(base + "/health"), 30, "web")
            processes[1].wait_for_output("ready", 30)
            ids = [f"s-{uuid.uuid4().hex[:10]}" for _ in range(args.commands)]
            first = time.time()
            with ThreadPoolExecutor(args.clients) as pool:
                answers = list(pool.map(lambda i: put_show(base, i), ids))
            accepted_at = time.time()
            assert {status for status, _, _ in answers} == {202}
            command_ids = [uuid.UUID(cid.split()[0]) for _, cid, _ in answers]

            def all_done() -> bool:
                last = pipeline.get_command(command_ids[-1])
                return (
                    last is not None
                    and last.is_terminal
                    and all(
                        (c := pipeline.get_command(cid)) is not None and c.is_terminal
                        for cid in command_ids
                    )
                )

            wait_until(all_done, 300, "every command to finish")
            commands = [pipeline.get_command(cid) for cid in command_ids]
            done_at = max(c.modified_on.timestamp() for c in commands if c)
            latencies = sorted(
                (c.modified_on - c.created_on).total_seconds() * 1000 for c in commands if c
            )
            statuses = {c.status for c in commands if c}
            round_trips, visible = [], []
            for _ in range(args.light):
                sent = time.perf_counter()
                status, answer, _ = put_show(base, f"l-{uuid.uuid4().hex[:10]}", wait=True)
                round_trips.append((time.perf_counter() - sent) * 1000)
                assert status == 201
                command_id, token = answer.split()
                document = get_json(f"{base}/commands/{command_id}", {"Consistency-Token": token})
                visible.append((time.perf_counter() - sent) * 1000)
                assert document["status"] == "succeeded"
            round_trips.sort()
            visible.sort()
        http_accepts = args.commands / (accepted_at - first)
        end_to_end = args.commands / (done_at - first)
        results.update(
            commands=args.commands,
            clients=args.clients,
            statuses=sorted(statuses),
            http_accepts_per_s=round(http_accepts, 1),
            end_to_end_per_s=round(end_to_end, 1),
            http_accept_vs_baseline=round(http_accepts / baseline, 2),
            end_to_end_vs_baseline=round(end_to_end / baseline, 2),
            burst_latency_ms_p50=round(statistics.median(latencies), 1),
            burst_latency_ms_p99=round(latencies[int(len(latencies) * 0.99) - 1], 1),
            light_load_round_trip_ms_p50=round(statistics.median(round_trips), 1),
            light_load_round_trip_ms_p99=round(round_trips[int(len(round_trips) * 0.99) - 1], 1),
            registry_visible_ms_p50=round(statistics.median(visible), 1),
            registry_visible_ms_p99=round(visible[int(len(visible) * 0.99) - 1], 1),
            measured_at=datetime.now().isoformat(timespec="seconds"),
        )
        container.close()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
