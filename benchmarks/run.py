"""``make bench``: Boxoffice and what a user would otherwise pick, side by side, one run.

On the servers of ``scripts/test-services.sh`` (PostgreSQL with fsync and synchronous
commit on when ``make bench`` starts it), with load from ``wrk``, a separate process:

- baselines: (1) bare Flask under the same gunicorn settings; (2) bare Celery no-op
  tasks over the same RabbitMQ, late acks and confirms; (3) ``eventsourcing``
  ``app.save()`` of one new aggregate per call, one client; (4) the hand-built service
  (Flask → ``delay()`` → a task that INSERTs, status in Celery's database backend);
- Boxoffice, its production topology: (a) accepts/s at saturation; (b) end to end/s:
  from the first request until every accepted command is succeeded *and* in the
  registry; (c) at 25 % and 50 % of (b): the ``Prefer: wait`` round trip and the time
  until the registry shows the outcome, p50/p95/p99; (d) a reservation's saga of four
  commands, placed to confirmed, p50/p99, on a new show and on one of 4,001 events
  (read from its snapshot); (e) a projection rebuild's events/s;
  (f) (b) and (c) again with a million events in the log; (g) ``sagas replay`` of
  thousands of recorded sagas, sagas/s (``benchmarks/replay.py``); (h) (b) with
  OpenTelemetry tracing off and on (the in-memory exporter), in pairs of runs, the
  median of the pairs' ratios, and the CPU a command costs each way; (i) three times
  (b)'s rate for a minute, admission control on, by clients that honour
  ``Retry-After`` (``benchmarks/overload.py``).

Every figure is also a ratio to its baseline of the same run. Writes JSON, a Markdown
table and PNG plots under ``benchmarks/results/``; sized for 2 cores.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import Notification, StoredEvent, Tracking

from application.event_log import BoxofficeApplication
from benchmarks.baselines import create_hand_table, hand_celery, noop, noop_celery
from benchmarks.cpu import cpu_seconds, per_command
from benchmarks.overload import LATE_SECONDS, overload, quantile
from benchmarks.plots import plot_latency, plot_throughput
from benchmarks.replay import measure as measure_replay
from benchmarks.wrk import WrkResult, run_wrk
from domain.show import Show
from infrastructure.event_store import (
    build_application,
    build_tracker,
    event_store_env,
)
from infrastructure.rebuild import ProjectionRebuild
from infrastructure.settings import Settings
from interfaces.bootstrap import migrate
from interfaces.cli.serve import PARTS
from projections.command_registry import CommandRegistryProjection
from tests.conftest import fresh_database
from tests.e2e.conftest import free_port
from tests.support.processes import ServiceProcess, http_ready, running, service_env, wait_until

SHOW = {"title": "Bench", "starts_at": "2027-01-01T20:00:00Z", "seats": ["A1"], "price_cents": 1}
BODY = json.dumps(SHOW)
BIN = Path(sys.executable).parent
# Commands done, in (b): the shows created and in the registry.
DONE_SQL = (
    "SELECT count(*) FROM command_registry WHERE status = 'succeeded' AND type = 'CreateShow'"
)
# Gunicorn as `boxoffice web` runs it (interfaces/cli/web.py), for the Flask baselines.
GUNICORN = ["-k", "gthread", "--threads", "8", "-w", "2", "--reuse-port", "--log-level", "warning"]


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p95 and p99 of ``samples`` (ms)."""
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(quantile(ordered, q), 1)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "n": len(ordered)}


def count(database_url: str, sql: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def load_and_drain(
    database_url: str, done_sql: str, load: Callable[[], WrkResult], timeout: float = 900
) -> tuple[WrkResult, float, list[tuple[float, int]]]:
    """Run ``load`` while sampling ``done_sql`` (a count of commands done) every quarter
    second; then wait until every command it got accepted is done. Returns the load's
    result, the seconds from its start until then, and the samples (seconds, done)."""
    before = count(database_url, done_sql)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not stop.is_set():
            samples.append((round(time.monotonic() - started, 2), count(database_url, done_sql)))
            stop.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = load()
        expected = before + result.accepted
        deadline = time.monotonic() + timeout
        while count(database_url, done_sql) < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not every accepted command is done after {timeout} s")
            time.sleep(0.05)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        sampler.join()
    return result, elapsed, [(t, n - before) for t, n in samples]


def eventsourcing_saves(server: str, saves: int) -> dict[str, float]:
    """(3) ``app.save()`` of one new aggregate per call, one client: saves/s, and the CPU
    a save costs (the client's thread and PostgreSQL), ms."""
    with fresh_database(server) as url:
        settings = Settings(database_url=url)
        migrate(settings)
        # The library's own recorder, as a user of eventsourcing would have it.
        env = event_store_env(settings)
        del env["APPLICATION_RECORDER_TOPIC"]
        app = BoxofficeApplication(env=env)
        before, client = cpu_seconds()["postgres"], time.thread_time()
        started = time.perf_counter()
        for number in range(saves):
            app.save(Show.schedule(f"es-{number}", "Bench", "2027-01-01T20:00:00Z", ["A1"], 1))
        rate = saves / (time.perf_counter() - started)
        spent = time.thread_time() - client + cpu_seconds()["postgres"] - before
        app.close()
    return {"per_s": round(rate, 1), "cpu_ms": round(spent * 1000 / saves, 3)}


def bare_flask(log_dir: Path, seconds: int) -> tuple[WrkResult, float]:
    """(1) accepts/s of bare Flask under the same gunicorn settings, and the CPU a
    request costs its processes, ms."""
    port = free_port()
    web = ServiceProcess(
        "bare-flask",
        dict(os.environ),
        log_dir,
        argv=[
            str(BIN / "gunicorn"),
            *GUNICORN,
            "-b",
            f"127.0.0.1:{port}",
            "benchmarks.baselines:bare_flask",
        ],
    )
    with running(web):
        wait_until(http_ready(f"http://127.0.0.1:{port}/shows/x"), 30, "bare flask")
        before = cpu_seconds()
        result = run_wrk(f"http://127.0.0.1:{port}", "bare", BODY, seconds)
        spent = per_command(before, cpu_seconds(), result.requests)
    return result, spent["total"]


def celery_worker(name: str, app: str, env: dict[str, str], log_dir: Path) -> ServiceProcess:
    argv = [
        str(BIN / "celery"),
        "-A",
        app,
        "worker",
        "-c",
        "2",
        "--loglevel",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
        f"--hostname={name}-{uuid.uuid4().hex[:6]}@%h",
    ]
    return ServiceProcess(name, env, log_dir, argv=argv)


def noop_tasks(broker: str, log_dir: Path, tasks: int) -> dict[str, Any]:
    """(2) end to end/s of no-op Celery tasks, published with confirms and run with late
    acks, and the CPU a task costs (the publisher's thread and the worker's processes), ms."""
    queue = f"bench.noop.{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "BENCH_BROKER_URL": broker, "BENCH_QUEUE": queue}
    os.environ.update(BENCH_BROKER_URL=broker, BENCH_QUEUE=queue)
    noop_celery.conf.update(broker_url=broker, task_default_queue=queue)
    worker = celery_worker("noop", "benchmarks.baselines:noop_celery", env, log_dir)
    with running(worker):
        wait_until(lambda: bool(noop_celery.control.ping(timeout=0.5)), 60, "the no-op worker")
        before = cpu_seconds()
        started, client = time.monotonic(), time.thread_time()
        with noop_celery.connection_for_write() as connection, connection.Producer() as producer:
            for _ in range(tasks):
                noop.apply_async(producer=producer)
        publisher = time.thread_time() - client

        def done() -> bool:
            stats = noop_celery.control.inspect(timeout=1).stats() or {}
            total = sum(s.get("total", {}).get("bench.noop", 0) for s in stats.values())
            return bool(total >= tasks)

        wait_until(done, 300, "the no-op tasks")
        rate = tasks / (time.monotonic() - started)
        spent = per_command(before, cpu_seconds(), tasks)
    spent["publisher"] = round(publisher * 1000 / tasks, 3)
    spent["total"] = round(spent["total"] + spent["publisher"], 3)
    return {"per_s": rate, "cpu_ms": spent}


def hand_built(server: str, broker: str, log_dir: Path, seconds: int) -> dict[str, Any]:
    """(4) the hand-built service: accepts/s, end to end/s until every row and every
    task's status is written, and the CPU a command costs its processes and PostgreSQL."""
    with fresh_database(server) as url:
        create_hand_table(url)
        queue = f"bench.hand.{uuid.uuid4().hex[:6]}"
        env = {
            **os.environ,
            "BENCH_BROKER_URL": broker,
            "BENCH_DATABASE_URL": url,
            "BENCH_QUEUE": queue,
        }
        port = free_port()
        web = ServiceProcess(
            "hand-web",
            env,
            log_dir,
            argv=[
                str(BIN / "gunicorn"),
                *GUNICORN,
                "-b",
                f"127.0.0.1:{port}",
                "benchmarks.baselines:hand_built",
            ],
        )
        worker = celery_worker("hand-worker", "benchmarks.baselines:hand_celery", env, log_dir)
        with running(web, worker):
            hand_celery.conf.update(broker_url=broker)
            wait_until(lambda: bool(hand_celery.control.ping(timeout=0.5)), 60, "the hand worker")
            wait_until(http_ready(f"http://127.0.0.1:{port}/shows/warm"), 30, "hand web")
            # A task's status is written after its row: a success is a command done.
            before = cpu_seconds()
            accepted, elapsed, samples = load_and_drain(
                url,
                "SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'",
                lambda: run_wrk(f"http://127.0.0.1:{port}", "hand", BODY, seconds),
            )
            spent = per_command(before, cpu_seconds(), accepted.accepted)
    return {
        "accepts_per_s": round(accepted.accepted_per_s, 1),
        "end_to_end_per_s": round(accepted.accepted / elapsed, 1),
        "accepted": accepted.accepted,
        "cpu_ms_per_command": spent,
        "samples": samples,
    }


# What the frameworks under a command cost in CPU, from the same run's baselines, each
# used one at a time as a user of it would: a command is one HTTP request, one task and
# at least two durable saves (its accept, and its outcome with its events), before any
# read, projection or log line of its own. Not a floor: Boxoffice's accepts share their
# transactions (group commit), which (3) does not. RabbitMQ's CPU is left out of every
# figure, Boxoffice's included.
def frameworks(request: float, task: dict[str, float], save: float) -> dict[str, float]:
    """The CPU, ms, of a bare Flask request, of a no-op Celery task and of an
    eventsourcing save, and of one request, one task and two saves together."""
    return {
        "bare_flask_request": request,
        "bare_celery_task": task["total"],
        "eventsourcing_save": save,
        "request_task_two_saves": round(request + task["total"] + 2 * save, 3),
    }


def untraced_cpu(box: dict[str, Any]) -> float:
    """Boxoffice's CPU per command, ms: the median of (h)'s untraced runs."""
    runs: list[dict[str, float]] = box["tracing"]["cpu_ms_per_command"]["none"]
    return round(statistics.median(run["total"] for run in runs), 2)


def cpu_ratios(box: dict[str, Any], baselines: dict[str, Any]) -> dict[str, float]:
    """Boxoffice's CPU per command against the hand-built service's, and against one
    request, one task and two saves of the frameworks."""
    spent = untraced_cpu(box)
    hand = baselines["hand_built"]["cpu_ms_per_command"]["total"]
    return {
        "cpu_vs_hand_built": round(spent / hand, 2),
        "cpu_vs_frameworks": round(spent / baselines["cpu_ms"]["request_task_two_saves"], 2),
    }


def alternating(first: str, second: str, pairs: int) -> Iterator[tuple[int, str]]:
    """The runs of ``pairs`` pairs, numbered by pair: ``first`` then ``second``, then
    the other way round, and so on, so that a steady drift of the machine's speed falls
    on both sides alike."""
    for pair in range(pairs):
        for side in (first, second) if pair % 2 == 0 else (second, first):
            yield pair, side


def boxoffice_env(url: str, broker: str, queue: str, port: int) -> dict[str, str]:
    return service_env(
        url,
        broker,
        queue,
        WEB_PORT=str(port),
        WEB_WORKERS="2",
        WORKER_CONCURRENCY="2",
        COMMAND_MODULES="",
        RATE_LIMIT_PER_SECOND="1000000",
        RATE_LIMIT_BURST="1000000",
        # The figures measure capacity: every command the burst sends is accepted, as
        # before admission control; the overload workload (i) turns it on.
        MAX_BACKLOG_SECONDS="0",
    )


def request(
    base: str, method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, Any, dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    sent = {"Content-Type": "application/json", **headers} if data else dict(headers)
    outgoing = urllib.request.Request(base + path, data=data, method=method, headers=sent)  # noqa: S310
    try:
        with urllib.request.urlopen(outgoing, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null"), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), dict(error.headers)


def paced(base: str, rate: float, seconds: float) -> dict[str, Any]:
    """(c) commands at ``rate``/s, each with ``Prefer: wait`` and then a registry read
    with its consistency token: the round trip and the time until the registry has it."""
    round_trips: list[float] = []
    visible: list[float] = []
    lock = threading.Lock()

    def one(number: int) -> None:
        show_id = f"paced-{rate:g}-{number}-{uuid.uuid4().hex[:6]}"
        sent = time.perf_counter()
        status, body, _ = request(base, "PUT", f"/shows/{show_id}", SHOW, Prefer="wait=10")
        answered = time.perf_counter()
        if status != 201:
            return
        read, document, _ = request(
            base,
            "GET",
            f"/commands/{body['command_id']}",
            **{"Consistency-Token": body["consistency_token"]},
        )
        seen = time.perf_counter()
        if read == 200 and document["status"] == "succeeded":
            with lock:
                round_trips.append((answered - sent) * 1000)
                visible.append((seen - sent) * 1000)

    total = int(rate * seconds)
    with ThreadPoolExecutor(64) as pool:
        started = time.perf_counter()
        for number in range(total):
            delay = started + number / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, number)
    return {
        "rate_per_s": round(rate, 1),
        "sent": total,
        "prefer_wait_ms": percentiles(round_trips),
        "registry_visible_ms": percentiles(visible),
        "visible_samples_ms": sorted(round(v, 2) for v in visible),
    }


def sagas(base: str, count_: int, on: tuple[str, list[str]] | None = None) -> dict[str, float]:
    """(d) a reservation placed until it is confirmed (four commands), one at a time, on
    a new show (or ``on``: a show's id and free seats)."""
    if on is None:
        seats = [f"S{n}" for n in range(count_)]
        show_id = f"saga-{uuid.uuid4().hex[:6]}"
        status, _, _ = request(
            base, "PUT", f"/shows/{show_id}", {**SHOW, "seats": seats}, Prefer="wait=10"
        )
        assert status == 201, status
    else:
        show_id, seats = on[0], on[1][:count_]
    durations: list[float] = []
    for seat in seats:
        reservation = f"r-{uuid.uuid4().hex[:8]}"
        body = {
            "show_id": show_id,
            "customer_id": "c",
            "seats": [seat],
            "card_token": "tok_approve",
        }
        sent = time.perf_counter()
        request(base, "PUT", f"/reservations/{reservation}", body)
        while True:
            code, document, _ = request(base, "GET", f"/reservations/{reservation}")
            if code == 200 and document["status"] == "confirmed":
                break
            if time.perf_counter() - sent > 30:
                raise TimeoutError(f"reservation {reservation} not confirmed")
            time.sleep(0.002)
        durations.append((time.perf_counter() - sent) * 1000)
    return percentiles(durations)


# (d) again on a show that sold this many seats before (two events each): the commands
# that change it read it from its latest snapshot, not from its first event.
HOT_SHOW_SOLD = 2_000


def hot_show(url: str, base: str, free: int) -> tuple[str, list[str]]:
    """A show made through the API, then sold :data:`HOT_SHOW_SOLD` seats by saves
    straight to its log, with ``free`` seats left: its id and those seats, once the
    views have it all."""
    show_id = f"hot-{uuid.uuid4().hex[:6]}"
    seats = [f"H{n}" for n in range(HOT_SHOW_SOLD + free)]
    status, _, _ = request(
        base, "PUT", f"/shows/{show_id}", {**SHOW, "seats": seats}, Prefer="wait=10"
    )
    assert status == 201, status
    app = build_application(Settings(database_url=url))
    show: Show = app.repository.get(Show.create_id(show_id))
    for number, seat in enumerate(seats[:HOT_SHOW_SOLD]):
        show.reserve_or_wait(f"sold-{number}", [seat])
        show.sell_seats(f"sold-{number}")
        if number % 100 == 99:
            app.save(show)
    app.save(show)
    app.close()

    def sold() -> bool:
        code, document, _ = request(base, "GET", f"/shows/{show_id}")
        return code == 200 and len(document["seats"]["available"]) == free

    wait_until(sold, 120, "the hot show in its view")
    return show_id, seats[HOT_SHOW_SOLD:]


def rebuild(settings: Settings) -> dict[str, float]:
    """(e) the command registry rebuilt from the log by ``boxoffice projections rebuild``'s
    machinery, into its shadow table: events/s."""
    app = build_application(settings)
    rebuilding = ProjectionRebuild(app, CommandRegistryProjection)
    rebuilding.start()
    head = rebuilding.head()
    started = time.perf_counter()
    events = rebuilding.catch_up(head, progress=lambda n: None)
    elapsed = time.perf_counter() - started
    app.close()
    return {"events": events, "events_per_s": round(events / elapsed, 1)}


def boxoffice(server: str, broker: str, log_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Boxoffice in its production topology: (a) to (e), (g), then (f): (b) and (c) on a
    log that started empty and on a log of ``args.seeded_events`` events, at the same
    paced rates."""
    with fresh_database(server) as url:
        empty = measure(url, broker, log_dir, args)
        print("bench: boxoffice, rebuild", file=sys.stderr)
        reader = build_application(Settings(database_url=url))
        template = list(reader.recorder.select_notifications(start=None, limit=10_000_000))
        reader.close()
        empty["rebuild"] = rebuild(Settings(database_url=url))
    if args.replay_sagas:
        print(f"bench: boxoffice, replaying {args.replay_sagas} sagas", file=sys.stderr)
        empty["replay"] = measure_replay(server, args.replay_sagas)
    if args.seeded_events:
        rates = {share: load["rate_per_s"] for share, load in empty["paced"].items()}
        empty["seeded"] = long_log(server, broker, log_dir, args, template, rates)
    return empty


# (f) The long log: (b) and (c) on a log that started empty and on the seeded log, in
# pairs whose order alternates, as (h)'s do. One run's end to end swings by a tenth
# from the next on this machine (six untraced runs of one `make bench`: 178.6 to
# 211.2/s), as much as the bound the figure is held to; the median of the pairs'
# ratios is not moved by one slow run.
LONG_LOG_PAIRS = 3


def long_log(
    server: str,
    broker: str,
    log_dir: Path,
    args: argparse.Namespace,
    template: list[Notification],
    rates: dict[str, float],
) -> dict[str, Any]:
    """(f) ``args.seeded_events`` events in the log: :data:`LONG_LOG_PAIRS` pairs of runs
    of (b) and (c) at ``rates``, one on a log that started empty, one on the seeded log,
    and each figure as the seeded run's over the other's.

    Each side keeps its database from one run to the next, each run a fresh stack: a
    database created just before a run would leave that side alone to pay for its
    creation's writes and its cold tables. The short log grows by a run's commands
    (some 15,000 events) each time, against the long log's million."""
    runs: dict[str, list[dict[str, Any]]] = {"empty": [], "seeded": []}
    with fresh_database(server) as short_url, fresh_database(server) as seeded_url:
        urls = {"empty": short_url, "seeded": seeded_url}
        print(f"bench: boxoffice, seeding {args.seeded_events} events", file=sys.stderr)
        events = seed_log(seeded_url, template, args.seeded_events)
        for pair, log in alternating("empty", "seeded", LONG_LOG_PAIRS):
            print(f"bench: boxoffice, the long log, pair {pair + 1}: {log}", file=sys.stderr)
            runs[log].append(measure(urls[log], broker, log_dir, args, rates))
    return {"events": events, **long_log_figures(runs["empty"], runs["seeded"])}


def long_log_figures(empty: list[dict[str, Any]], seeded: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure of (f)'s runs (rates, and latencies' p50s), the pairs' ratios (seeded
    over empty: a rate below 1 or a latency above 1 is the long log's cost) and their
    medians; with the first seeded run's samples, for the throughput plot."""
    figures: dict[str, Callable[[dict[str, Any]], float]] = {
        "accepts/s": lambda run: float(run["accepts_per_s"]),
        "end to end/s": lambda run: float(run["end_to_end_per_s"]),
    }
    for share in empty[0]["paced"]:
        for latency, label in (
            ("prefer_wait_ms", "Prefer: wait"),
            ("registry_visible_ms", "registry visible"),
        ):
            figures[f"{label}, {share} load, p50 ms"] = functools.partial(_p50, share, latency)
    measured = {
        name: {"empty": [at(run) for run in empty], "seeded": [at(run) for run in seeded]}
        for name, at in figures.items()
    }
    pairs = {
        name: [round(s / e, 3) for e, s in zip(runs["empty"], runs["seeded"], strict=True)]
        for name, runs in measured.items()
    }
    return {
        "figures": measured,
        "pair_ratios": pairs,
        "seeded_vs_empty": {name: statistics.median(r) for name, r in pairs.items()},
        "samples": seeded[0]["samples"],
    }


def _p50(share: str, latency: str, run: dict[str, Any]) -> float:
    return float(run["paced"][share][latency]["p50"])


# Events per save while seeding (one transaction each).
SEED_BATCH = 5_000


def seed_log(url: str, template: list[Notification], events: int) -> int:
    """(f) ``events`` events already in the log: copies of ``template`` (a measured run's
    log) under new aggregate ids, with every follower's position at the head, as if
    applied long ago. Returns the number written."""
    settings = Settings(database_url=url)
    tables = migrate(settings)
    app = build_application(settings)
    batch: list[StoredEvent] = []
    written = 0
    while written < events:
        renamed: dict[UUID | str, UUID] = {}
        for event in template[: events - written]:
            new_id = renamed.setdefault(event.originator_id, uuid.uuid4())
            batch.append(StoredEvent(new_id, event.originator_version, event.topic, event.state))
            written += 1
            if len(batch) == SEED_BATCH or written == events:
                app.recorder.insert_events(batch)
                batch = []
    head = app.recorder.max_notification_id() or 0
    app.close()
    for table in tables:
        if table.endswith("_tracking"):
            tracker = build_tracker(settings, table.removesuffix("_tracking"))
            tracker.insert_tracking(Tracking(BoxofficeApplication.name, head))
            tracker.datastore.close()
    settle(url)
    return written


def settle(url: str) -> None:
    """Leave a just-seeded log as a long-lived one is: vacuumed, analysed and written
    out. Otherwise autovacuum's pass over the million rows and the flush of the seed's
    dirty pages start some ten seconds after the seed and overlap (f)'s burst, on the
    same two cores (docs/throughput.md, "The long log in the full run")."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")


@contextmanager
def production_stack(
    url: str, broker: str, log_dir: Path, queue_prefix: str, **extra: str
) -> Iterator[str]:
    """Boxoffice in its production topology (every part of ``boxoffice serve`` as its
    own process, with ``extra`` settings) on the database at ``url``, warmed up; yields
    its base URL."""
    queue = f"{queue_prefix}.{uuid.uuid4().hex[:6]}"
    migrate(Settings(database_url=url, broker_url=broker, command_queue=queue))
    port = free_port()
    env = {**boxoffice_env(url, broker, queue, port), **extra}
    parts = {part: ServiceProcess(part, env, log_dir) for part in PARTS}
    base = f"http://127.0.0.1:{port}"
    with running(*parts.values()):
        wait_until(http_ready(base + "/health"), 60, "web")
        parts["worker"].wait_for_output("ready", 60)
        # A show of its own: on a log a stack ran on before, an earlier id's answer
        # would come back without this stack running anything.
        request(base, "PUT", f"/shows/warm-up-{uuid.uuid4().hex[:6]}", SHOW, Prefer="wait=10")
        yield base


def measure(
    url: str,
    broker: str,
    log_dir: Path,
    args: argparse.Namespace,
    rates: dict[str, float] | None = None,
) -> dict[str, Any]:
    """(a) to (d) on the database at ``url``; (c) at ``rates``, or at 25 % and 50 % of
    the end-to-end rate just measured. Sagas (d) only when no rates are given."""
    # Ids of their own: (f) runs this more than once on one log, where the ids of an
    # earlier run would be answered as that run's commands, not run again.
    ids = f"box{uuid.uuid4().hex[:6]}"
    with production_stack(url, broker, log_dir, "bench.box") as base:
        accepted, elapsed, samples = load_and_drain(
            url, DONE_SQL, lambda: run_wrk(base, ids, BODY, args.burst_seconds)
        )
        end_to_end = accepted.accepted / elapsed
        first = rates is None
        if rates is None:
            rates = {f"{share}%": end_to_end * share / 100 for share in (25, 50)}
        loads = {share: paced(base, rate, args.paced_seconds) for share, rate in rates.items()}
        saga = sagas(base, args.sagas) if first else None
        hot = sagas(base, args.sagas, hot_show(url, base, args.sagas)) if first else None
    measured: dict[str, Any] = {
        "accepts_per_s": round(accepted.accepted_per_s, 1),
        "accept_latency_ms": accepted.latency_ms,
        "non_2xx": accepted.non_2xx,
        "end_to_end_per_s": round(end_to_end, 1),
        "accepted": accepted.accepted,
        "samples": samples,
        "paced": loads,
    }
    if saga is not None and hot is not None:
        measured["saga_ms"] = saga
        measured["hot_show_saga_ms"] = {**hot, "show_events": 2 * HOT_SHOW_SOLD + 1}
    return measured


# (h) Tracing's cost: end to end with tracing off and on, in pairs, each run on a fresh
# database. The machine's speed drifts by more than the cost measured, within minutes:
# each pair runs its two back to back, in the order off-on, then on-off (so that a
# steady drift falls on both sides alike), and the figure is the median of the pairs'
# ratios, which one slow run does not move.
TRACING_PAIRS = 6


def tracing_cost(
    server: str, broker: str, log_dir: Path, seconds: int, pairs: int = TRACING_PAIRS
) -> dict[str, Any]:
    """(h) end to end/s with tracing off and with it on (``OTEL_TRACES_EXPORTER=memory``:
    every span made and batched, none shipped), in ``pairs`` pairs of runs, and the CPU
    a command costs across the parts and PostgreSQL in each."""
    runs: dict[str, list[float]] = {"none": [], "memory": []}
    cpu: dict[str, list[dict[str, float]]] = {"none": [], "memory": []}
    for _, exporter in alternating("none", "memory", pairs):
        with (
            fresh_database(server) as url,
            production_stack(
                url, broker, log_dir, "bench.trace", OTEL_TRACES_EXPORTER=exporter
            ) as base,
        ):
            load = functools.partial(run_wrk, base, "box", BODY, seconds)
            before = cpu_seconds()
            accepted, elapsed, _ = load_and_drain(url, DONE_SQL, load)
            cpu[exporter].append(per_command(before, cpu_seconds(), accepted.accepted))
            runs[exporter].append(round(accepted.accepted / elapsed, 1))
    rates = [on / off for off, on in zip(runs["none"], runs["memory"], strict=True)]
    costs = [on["total"] / off["total"] for off, on in zip(cpu["none"], cpu["memory"], strict=True)]
    return {
        "end_to_end_per_s": runs,
        "pair_ratios": [round(r, 3) for r in rates],
        "traced_vs_untraced": round(statistics.median(rates), 3),
        "cpu_ms_per_command": cpu,
        "cpu_pair_ratios": [round(c, 3) for c in costs],
        "cpu_traced_vs_untraced": round(statistics.median(costs), 3),
    }


# (i) Overload: three times the end-to-end capacity for a minute, admission control on
# with a backlog of at most 10 s, so that the limit binds within seconds.
OVERLOAD_FACTOR = 3.0
OVERLOAD_SECONDS = 60
OVERLOAD_LIMIT_SECONDS = 10.0


def overload_run(
    server: str, broker: str, log_dir: Path, capacity: float, seconds: int = OVERLOAD_SECONDS
) -> dict[str, Any]:
    """(i) the overload workload (benchmarks/overload.py) at :data:`OVERLOAD_FACTOR`
    times ``capacity`` (end to end/s)."""
    with (
        fresh_database(server) as url,
        production_stack(
            url,
            broker,
            log_dir,
            "bench.overload",
            MAX_BACKLOG_SECONDS=f"{OVERLOAD_LIMIT_SECONDS:g}",
        ) as base,
    ):
        return overload(
            base,
            url,
            os.getpid(),
            capacity * OVERLOAD_FACTOR,
            seconds,
            OVERLOAD_LIMIT_SECONDS,
        )


def capacity(server: str, broker: str, log_dir: Path, seconds: int) -> float:
    """End to end/s of one burst, as (b) measures it."""
    with fresh_database(server) as url, production_stack(url, broker, log_dir, "bench.cap") as base:
        accepted, elapsed, _ = load_and_drain(
            url, DONE_SQL, functools.partial(run_wrk, base, "box", BODY, seconds)
        )
    return accepted.accepted / elapsed


def fsync_setting(server: str) -> str:
    with psycopg.connect(server) as conn:
        fsync = conn.execute("SHOW fsync").fetchone()
        commit = conn.execute("SHOW synchronous_commit").fetchone()
    return f"fsync={fsync[0] if fsync else '?'}, synchronous_commit={commit[0] if commit else '?'}"


def table(results: dict[str, Any]) -> str:
    """The Markdown summary the README shows."""
    box, base, ratios = results["boxoffice"], results["baselines"], results["ratios"]
    hand, cpu = base["hand_built"], base.get("cpu_ms")
    rows = [
        ("accepts/s", box["accepts_per_s"], f"{ratios['accept_vs_bare_flask']}x bare Flask"),
        (
            "end to end/s",
            box["end_to_end_per_s"],
            f"{ratios['end_to_end_vs_hand_built']}x hand-built, "
            f"{ratios['end_to_end_vs_bare_celery']}x bare Celery",
        ),
    ]
    for share, load in box["paced"].items():
        visible, waited = load["registry_visible_ms"], load["prefer_wait_ms"]
        rate = f"at {load['rate_per_s']}/s"
        rows.append((f"registry visible, {share} load, p50/p99 ms", _pair(visible), rate))
        rows.append((f"Prefer: wait, {share} load, p50/p99 ms", _pair(waited), rate))
    rows.append(("saga of 4 commands, p50/p99 ms", _pair(box["saga_ms"]), ""))
    hot = box["hot_show_saga_ms"]
    rows.append(
        (
            f"saga of 4 commands on a show of {hot['show_events']:,} events, p50/p99 ms",
            _pair(hot),
            f"{ratios['hot_show_saga_vs_new_show']}x the saga on a new show (p50)",
        )
    )
    rebuilt = box["rebuild"]
    rows.append(("rebuild, events/s", rebuilt["events_per_s"], f"{rebuilt['events']} events"))
    replayed = box.get("replay")
    if replayed:
        rows.append(
            (
                "saga replay, sagas/s",
                replayed["sagas_per_s"],
                f"{replayed['sagas']} sagas, {replayed['identical']} identical",
            )
        )
    seeded = box.get("seeded")
    if seeded:
        events = f"{seeded['events']:,} events"
        for name, measured in seeded["figures"].items():
            rows.append(
                (
                    f"{name}, short log / {events} in the log",
                    f"{' '.join(map(str, measured['empty']))} / "
                    f"{' '.join(map(str, measured['seeded']))}",
                    f"{seeded['seeded_vs_empty'][name]}x the short log's (median of the "
                    f"pairs {', '.join(map(str, seeded['pair_ratios'][name]))})",
                )
            )
    traced = box.get("tracing")
    if traced:
        runs = traced["end_to_end_per_s"]
        rows.append(
            (
                "end to end/s, tracing off / on (memory exporter)",
                f"{' '.join(map(str, runs['none']))} / {' '.join(map(str, runs['memory']))}",
                f"on {ratios['traced_vs_untraced_end_to_end']}x off (median of the pairs "
                f"{', '.join(map(str, traced['pair_ratios']))})",
            )
        )
        spent = traced["cpu_ms_per_command"]
        rows.append(
            (
                "CPU per command, ms, tracing off / on (every part and PostgreSQL)",
                f"{' '.join(str(c['total']) for c in spent['none'])} / "
                f"{' '.join(str(c['total']) for c in spent['memory'])}",
                f"on {ratios['traced_vs_untraced_cpu']}x off (median of the pairs "
                f"{', '.join(map(str, traced['cpu_pair_ratios']))})",
            )
        )
        if "cpu_vs_frameworks" in ratios:
            rows.append(
                (
                    "CPU per command, untraced, ms (median)",
                    untraced_cpu(box),
                    f"{ratios['cpu_vs_hand_built']}x the hand-built service's, "
                    f"{ratios['cpu_vs_frameworks']}x a request, a task and two saves of (1) to (3)",
                )
            )
    overloaded = box.get("overload")
    if overloaded:
        answers = overloaded["answer_ms"]
        rows += [
            (
                f"overload {OVERLOAD_FACTOR:g}x for {overloaded['seconds']} s: answered within 1 s",
                f"{overloaded['answered_within_1s'] * 100:.1f} %",
                f"{overloaded['requests']} requests, p99 {answers['p99']} ms, max "
                f"{answers['max']} ms; {overloaded['statuses']}",
            ),
            (
                "overload: accepted on the first retry",
                f"{(overloaded['accepted_on_first_retry'] or 0) * 100:.1f} %",
                f"of {overloaded['shed_then_retried']} commands shed and sent again; "
                f"{(overloaded.get('first_retries_late') or 0) * 100:.1f} % of those retries "
                f"sent over {LATE_SECONDS:g} s late by the client, "
                f"{(overloaded.get('accepted_on_first_retry_on_time') or 0) * 100:.1f} % "
                "accepted of those sent on time",
            ),
            (
                "overload: peak backlog, s of work",
                overloaded["peak_backlog_seconds"],
                f"MAX_BACKLOG_SECONDS={overloaded['max_backlog_seconds']:g}; "
                f"{overloaded['peak_waiting']} waiting at {overloaded['decided_per_s']}/s",
            ),
            (
                "overload: RSS, highest / lowest, worst process",
                overloaded["rss_highest_over_lowest"]["worst"],
                f"of {overloaded['rss_highest_over_lowest']['processes']} processes",
            ),
        ]
    machine = results["machine"]
    lines = [
        f"Measured {results['measured_at']} on {machine['cpus']} cores; "
        f"PostgreSQL {machine['postgres']}.",
        "",
        "| baseline | figure |",
        "|---|---|",
        f"| (1) bare Flask, accepts/s | {base['bare_flask_accepts_per_s']} |",
        f"| (2) bare Celery no-op tasks, end to end/s | {base['bare_celery_per_s']} |",
        f"| (3) eventsourcing `app.save()`, saves/s | {base['eventsourcing_saves_per_s']} |",
        f"| (4) hand-built service, accepts/s | {hand['accepts_per_s']} |",
        f"| (4) hand-built service, end to end/s | {hand['end_to_end_per_s']} |",
        *(
            [
                f"| (1) bare Flask, CPU per request, ms | {cpu['bare_flask_request']} |",
                f"| (2) bare Celery, CPU per no-op task, ms | {cpu['bare_celery_task']} |",
                f"| (3) eventsourcing, CPU per save, ms | {cpu['eventsourcing_save']} |",
                "| (1) + (2) + 2 saves of (3): a command's request, task and saves, ms | "
                f"{cpu['request_task_two_saves']} |",
                "| (4) hand-built service, CPU per command, ms | "
                f"{hand['cpu_ms_per_command']['total']} |",
            ]
            if cpu
            else []
        ),
        "",
        "| Boxoffice | measured | compared |",
        "|---|---|---|",
        *(f"| {name} | {value} | {note} |" for name, value, note in rows),
    ]
    return "\n".join(lines) + "\n"


def _pair(figures: dict[str, float]) -> str:
    return f"{figures['p50']} / {figures['p99']}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst-seconds", type=int, default=15)
    parser.add_argument("--paced-seconds", type=float, default=15)
    parser.add_argument("--sagas", type=int, default=40)
    parser.add_argument(
        "--seeded-events",
        type=int,
        default=1_000_000,
        help="(f): events already in the log for the second run; 0 to skip it",
    )
    parser.add_argument(
        "--replay-sagas",
        type=int,
        default=3_000,
        help="(g): sagas recorded, then replayed by `sagas replay`; 0 to skip it",
    )
    parser.add_argument("--saves", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--tracing-only",
        type=int,
        metavar="PAIRS",
        help="measure (h) alone, PAIRS pairs of runs, and print it, writing no results",
    )
    parser.add_argument(
        "--overload-only",
        type=int,
        metavar="SECONDS",
        help="measure the capacity, then (i) alone for SECONDS, and print it, writing no results",
    )
    parser.add_argument(
        "--boxoffice-only",
        action="store_true",
        help="measure Boxoffice alone and print it, writing no results (while working on it)",
    )
    args = parser.parse_args()
    server, broker = os.environ["TEST_DATABASE_URL"], os.environ["TEST_BROKER_URL"]
    log_dir = Path(tempfile.mkdtemp(prefix="bench-"))
    print(f"bench: logs in {log_dir}", file=sys.stderr)
    if args.tracing_only:
        cost = tracing_cost(server, broker, log_dir, args.burst_seconds, args.tracing_only)
        print(json.dumps(cost, indent=2))
        return 0
    if args.overload_only:
        rate = capacity(server, broker, log_dir, args.burst_seconds)
        print(f"bench: capacity {rate:.1f}/s", file=sys.stderr)
        print(json.dumps(overload_run(server, broker, log_dir, rate, args.overload_only), indent=2))
        return 0
    if args.boxoffice_only:
        box = boxoffice(server, broker, log_dir, args)
        for run in (box, box.get("seeded", {})):
            run.pop("samples", None)
        for load in box["paced"].values():
            load.pop("visible_samples_ms", None)
        print(json.dumps(box, indent=2))
        return 0
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("eventsourcing_saves_per_s", lambda: eventsourcing_saves(server, args.saves)),
        ("bare_flask", lambda: bare_flask(log_dir, args.burst_seconds)),
        ("bare_celery_per_s", lambda: noop_tasks(broker, log_dir, args.tasks)),
        ("hand_built", lambda: hand_built(server, broker, log_dir, args.burst_seconds)),
    ]
    baselines: dict[str, Any] = {}
    for name, step in steps:
        print(f"bench: {name}", file=sys.stderr)
        baselines[name] = step()
    flask, flask_cpu = baselines.pop("bare_flask")
    saves, celery = baselines.pop("eventsourcing_saves_per_s"), baselines.pop("bare_celery_per_s")
    baselines["bare_flask_accepts_per_s"] = round(flask.accepted_per_s, 1)
    baselines["eventsourcing_saves_per_s"] = saves["per_s"]
    baselines["bare_celery_per_s"] = round(celery["per_s"], 1)
    baselines["cpu_ms"] = frameworks(flask_cpu, celery["cpu_ms"], saves["cpu_ms"])
    print("bench: boxoffice", file=sys.stderr)
    box = boxoffice(server, broker, log_dir, args)
    print("bench: boxoffice, tracing off and on", file=sys.stderr)
    box["tracing"] = tracing_cost(server, broker, log_dir, args.burst_seconds)
    print("bench: boxoffice, overload", file=sys.stderr)
    box["overload"] = overload_run(server, broker, log_dir, box["end_to_end_per_s"])
    hand = baselines["hand_built"]
    results: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "postgres": fsync_setting(server)},
        "baselines": baselines,
        "boxoffice": box,
        "ratios": {
            "accept_vs_bare_flask": round(
                box["accepts_per_s"] / baselines["bare_flask_accepts_per_s"], 2
            ),
            "end_to_end_vs_hand_built": round(
                box["end_to_end_per_s"] / hand["end_to_end_per_s"], 2
            ),
            "end_to_end_vs_bare_celery": round(
                box["end_to_end_per_s"] / baselines["bare_celery_per_s"], 2
            ),
            "end_to_end_vs_eventsourcing_saves": round(
                box["end_to_end_per_s"] / baselines["eventsourcing_saves_per_s"], 2
            ),
            "hot_show_saga_vs_new_show": round(
                box["hot_show_saga_ms"]["p50"] / box["saga_ms"]["p50"], 2
            ),
            "traced_vs_untraced_end_to_end": box["tracing"]["traced_vs_untraced"],
            **cpu_ratios(box, baselines),
            "traced_vs_untraced_cpu": box["tracing"]["cpu_traced_vs_untraced"],
            **(
                {"seeded_end_to_end_vs_empty": box["seeded"]["seeded_vs_empty"]["end to end/s"]}
                if "seeded" in box
                else {}
            ),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = results["measured_at"].replace(":", "")
    summary = results
    (args.out / f"{stamp}.json").write_text(json.dumps(summary, indent=2))
    (args.out / "latest.json").write_text(json.dumps(summary, indent=2))
    (args.out / "latest.md").write_text(table(results))
    curves = {"Boxoffice": box["samples"], "hand-built": hand["samples"]}
    if "seeded" in box:
        curves[f"Boxoffice, {box['seeded']['events']:,} events in the log"] = box["seeded"][
            "samples"
        ]
    plot_throughput(curves, args.out / "throughput.png")
    plot_latency(
        {share: load["visible_samples_ms"] for share, load in box["paced"].items()},
        args.out / "latency_cdf.png",
    )
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
