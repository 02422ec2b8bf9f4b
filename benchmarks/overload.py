"""(i) Overload: commands offered at a multiple of the end-to-end capacity for a minute,
with admission control on, by clients that honour ``Retry-After``.

Each command has its own ``Idempotency-Key``. A client sends it at its time in an open
loop (the rate does not slow down when the service does); a ``503`` with
``Retry-After`` sends it again that many seconds later, with the same key, until it is
accepted. What is measured: how long each answer took, how many commands were accepted
on their first retry, the backlog (commands waiting in the registry) against
``MAX_BACKLOG_SECONDS`` at the rate they were decided, and the resident memory of every
process of the service, sampled each second.
"""

from __future__ import annotations

import heapq
import http.client
import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psycopg

from benchmarks.cpu import PROC, descendants

# The commands waiting and those decided, as admission control counts them.
BACKLOG_SQL = (
    "SELECT count(*) FILTER (WHERE status IN ('accepted', 'running', 'retrying')), "
    "count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'dead_lettered')), "
    "(SELECT count(*) FROM admission_tickets), "
    "count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'dead_lettered') "
    "AND written_at > clock_timestamp() - interval '10 s') "
    "FROM command_registry"
)
# Commands still unaccepted this long after the load ended are counted as given up.
RETRY_GRACE_SECONDS = 180
# A retry sent more than this after the time its Retry-After said is late: the client
# (its threads all busy) did not honour it, and its ticket no longer held its room.
LATE_SECONDS = 1.0


@dataclass
class Job:
    """One command: its key, its attempts, what each answer was, and how long after
    the time it was due each attempt was sent (seconds)."""

    key: str
    attempts: int = 0
    statuses: list[int] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)
    due_at: float = 0.0


@dataclass
class Observed:
    """What the clients and the samplers saw."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    # (seconds since the start, commands waiting, commands decided), each second.
    backlog: list[tuple[float, int, int]] = field(default_factory=list)
    # The tickets out and the commands decided in the last 10 s, each second.
    tickets: list[tuple[int, int]] = field(default_factory=list)
    rss: dict[int, list[int]] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Clients:
    """Keep-alive connections, one per sending thread."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.local = threading.local()

    def put(self, path: str, body: bytes, key: str) -> tuple[int, dict[str, str]]:
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        for _ in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.local.conn = conn
            try:
                conn.request("PUT", path, body=body, headers=headers)
                answer = conn.getresponse()
                answer.read()
                return answer.status, dict(answer.headers)
            except (OSError, http.client.HTTPException):
                self.local.conn = None
        return 599, {}


def _rss_pages(pid: int) -> int | None:
    try:
        return int((PROC / str(pid) / "statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _service_pids(root: int) -> dict[int, str]:
    """Every process under ``root`` (the bench), with its command."""
    found: dict[int, str] = {}
    for pid in descendants(root):
        try:
            argv = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        found[pid] = argv.strip()
    return found


def overload(
    base: str,
    database_url: str,
    root: int,
    rate: float,
    seconds: float,
    limit_seconds: float,
) -> dict[str, Any]:
    """Offer PUT /shows at ``rate``/s for ``seconds`` to the service at ``base`` (its
    processes under pid ``root``), honouring every ``Retry-After``; the figures."""
    observed = Observed()
    clients = Clients(base)
    body = json.dumps(
        {
            "title": "Overload",
            "starts_at": "2027-01-01T20:00:00Z",
            "seats": ["A1"],
            "price_cents": 1,
        }
    ).encode()
    due: list[tuple[float, int, Job]] = []
    due_lock = threading.Condition()
    jobs: list[Job] = []
    run = uuid.uuid4().hex[:6]
    started = time.monotonic()
    load_ends = started + seconds
    outstanding = [0]

    def send(job: Job) -> None:
        sent = time.monotonic()
        job.lateness.append(sent - job.due_at)
        status, headers = clients.put(f"/shows/ov-{run}-{job.key}", body, job.key)
        answered = time.monotonic()
        with observed.lock:
            observed.latencies_ms.append((answered - sent) * 1000)
            observed.statuses[status] += 1
        job.attempts += 1
        job.statuses.append(status)
        if status == 503 or status >= 599:
            wait = float(headers.get("Retry-After", "1"))
            job.due_at = answered + wait
            with due_lock:
                heapq.heappush(due, (job.due_at, id(job), job))
                due_lock.notify()
        else:
            with due_lock:
                outstanding[0] -= 1
                due_lock.notify()

    def schedule_new() -> None:
        total = int(rate * seconds)
        for number in range(total):
            job = Job(f"{number}", due_at=started + number / rate)
            jobs.append(job)
            with due_lock:
                outstanding[0] += 1
                heapq.heappush(due, (job.due_at, id(job), job))
                due_lock.notify()

    stop = threading.Event()

    def sample() -> None:
        pids = _service_pids(root)
        observed.names.update(pids)
        while not stop.is_set():
            at = round(time.monotonic() - started, 1)
            try:
                with psycopg.connect(database_url) as conn:
                    row = conn.execute(BACKLOG_SQL).fetchone()
                if row is not None:
                    observed.backlog.append((at, int(row[0]), int(row[1])))
                    observed.tickets.append((int(row[2]), int(row[3])))
            except psycopg.Error:
                pass
            for pid in pids:
                pages = _rss_pages(pid)
                if pages is not None:
                    observed.rss.setdefault(pid, []).append(pages)
            stop.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    scheduler = threading.Thread(target=schedule_new, daemon=True)
    scheduler.start()
    gave_up_at = load_ends + RETRY_GRACE_SECONDS
    with ThreadPoolExecutor(96) as pool:
        while True:
            with due_lock:
                if (
                    not scheduler.is_alive() and outstanding[0] == 0
                ) or time.monotonic() > gave_up_at:
                    break
                if not due:
                    due_lock.wait(0.05)
                    continue
                at, _, job = due[0]
                pause = at - time.monotonic()
                if pause > 0:
                    due_lock.wait(min(pause, 0.05))
                    continue
                heapq.heappop(due)
            pool.submit(send, job)
    finished = time.monotonic()
    stop.set()
    sampler.join()
    return _figures(observed, jobs, started, finished, seconds, rate, limit_seconds)


def quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of the sorted, non-empty ``ordered``."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _figures(
    observed: Observed,
    jobs: list[Job],
    started: float,
    finished: float,
    seconds: float,
    rate: float,
    limit_seconds: float,
) -> dict[str, Any]:
    latencies = sorted(observed.latencies_ms)
    accepted = [j for j in jobs if j.statuses and j.statuses[-1] == 202]
    retried = [j for j in jobs if len(j.statuses) > 1 and j.statuses[0] == 503]
    first_retry = [j for j in retried if j.statuses[1] == 202]
    # The first retries sent when told (the client's threads keep up or fall behind).
    on_time = [j for j in retried if j.lateness[1] <= LATE_SECONDS]
    on_time_accepted = [j for j in on_time if j.statuses[1] == 202]
    lateness = sorted(j.lateness[1] for j in retried)
    # The rate commands were decided while the load lasted (from its 5th second).
    during = [(t, d) for t, _, d in observed.backlog if 5 <= t <= seconds]
    drained = (
        (during[-1][1] - during[0][1]) / (during[-1][0] - during[0][0]) if len(during) > 1 else 0.0
    )
    peak = max((n for _, n, _ in observed.backlog), default=0)
    # Each process's memory from the 10th second on (warmed up), highest over lowest.
    swings = {}
    for pid, pages in observed.rss.items():
        steady = pages[10:] or pages
        if steady and min(steady) > 0:
            swings[pid] = round(max(steady) / min(steady), 3)
    worst = max(swings, key=lambda pid: swings[pid], default=None)

    def at(q: float) -> float:
        return round(quantile(latencies, q), 1)

    return {
        "offered_per_s": round(rate, 1),
        "seconds": seconds,
        "max_backlog_seconds": limit_seconds,
        "requests": len(latencies),
        "statuses": {str(k): v for k, v in sorted(observed.statuses.items())},
        "answer_ms": {"p50": at(0.5), "p99": at(0.99), "max": round(latencies[-1], 1)}
        if latencies
        else {},
        "answered_within_1s": round(sum(1 for ms in latencies if ms <= 1000) / len(latencies), 4)
        if latencies
        else 0.0,
        "commands": len(jobs),
        "accepted": len(accepted),
        "seconds_to_last_accept": round(finished - started, 1),
        "shed_then_retried": len(retried),
        "accepted_on_first_retry": round(len(first_retry) / len(retried), 3) if retried else None,
        "first_retries_late": round(1 - len(on_time) / len(retried), 3) if retried else None,
        "first_retry_lateness_s": {
            "p50": round(quantile(lateness, 0.5), 2),
            "p99": round(quantile(lateness, 0.99), 2),
        }
        if lateness
        else {},
        "accepted_on_first_retry_on_time": round(len(on_time_accepted) / len(on_time), 3)
        if on_time
        else None,
        "peak_waiting": peak,
        "peak_tickets": max((t for t, _ in observed.tickets), default=0),
        # Every 5th second: (second, waiting, tickets out, decided in the last 10 s).
        "series": [
            (t, n, *observed.tickets[i])
            for i, (t, n, _) in enumerate(observed.backlog)
            if i % 5 == 0 and i < len(observed.tickets)
        ],
        "decided_per_s": round(drained, 1),
        "peak_backlog_seconds": round(peak / drained, 1) if drained else None,
        "rss_highest_over_lowest": {
            "worst": swings.get(worst) if worst is not None else None,
            "worst_process": observed.names.get(worst, "") if worst is not None else "",
            "processes": len(swings),
        },
    }
