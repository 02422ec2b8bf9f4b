"""A development probe: one command at a time through the whole stack, timed by stage."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from benchmarks.run import SHOW, production_stack, request
from tests.conftest import fresh_database


def main() -> int:
    server, broker = os.environ["TEST_DATABASE_URL"], os.environ["TEST_BROKER_URL"]
    log_dir = Path(tempfile.mkdtemp(prefix="probe-"))
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    with fresh_database(server) as url, production_stack(url, broker, log_dir, "probe") as base:
        rows = []
        for n in range(count):
            sent = time.perf_counter()
            status, body, _ = request(base, "PUT", f"/shows/p{n}", SHOW, Prefer="wait=10")
            answered = time.perf_counter()
            if status != 201:
                raise RuntimeError(f"PUT /shows/p{n} answered {status}: {body}")
            _, doc, _ = request(
                base,
                "GET",
                f"/commands/{body['command_id']}",
                **{"Consistency-Token": body["consistency_token"]},
            )
            submitted = datetime.fromisoformat(doc["submitted_at"])
            attempt = doc["attempts"][0]
            started = datetime.fromisoformat(attempt["started_at"])
            ended = datetime.fromisoformat(attempt["ended_at"])
            rows.append(
                (
                    (answered - sent) * 1000,
                    (started - submitted).total_seconds() * 1000,
                    (ended - started).total_seconds() * 1000,
                )
            )
            time.sleep(0.05)
        for name, i in (("wait", 0), ("accepted->started", 1), ("started->ended", 2)):
            values = sorted(r[i] for r in rows)
            print(f"{name}: p50 {values[len(values) // 2]:.1f} ms, max {values[-1]:.1f} ms")
        if os.environ.get("PROBE_HOLD"):
            print(f"holding {base}", flush=True)
            input()
    return 0


if __name__ == "__main__":
    sys.exit(main())
