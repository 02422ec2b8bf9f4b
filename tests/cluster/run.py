"""``make test-cluster``: the service on seven hosts, its active parts' host cut off.

Hosts are network namespaces on a bridge (:mod:`tests.cluster.netns`): PostgreSQL and
RabbitMQ on ``db``; ``web-a`` and ``web-b`` (gunicorn); ``worker-a`` and ``worker-b``;
and a relay, a projector and a saga runner on each of ``parts-a`` and ``parts-b``
(active and standby for the relay; each view and the saga runner in two segments, the
segments shared by the two projectors and the two saga runners). Clients place
reservations through both web hosts with ``Prefer: wait``. Meanwhile the host that holds
the relay's lease is cut off (its veth down: its processes run on and see nothing) for
longer than a lease, and put back, several times, and one worker host is killed
outright. A monitor beside the database records every take-over of a lease: the time
from the lease's lapse (its last expiry) to the successor's taking it, by the database's
clock. Then the books of ``make chaos``: every accepted command one outcome, nothing
twice, the seats and the money, every view equal to the log, every saga replaying as
recorded; and a stream of status changes (SSE) read from each web host.

Usage: ``python -m tests.cluster.run [--reservations N] [--cuts N]`` as root. It prints
a JSON report and exits 1 if the books do not balance or a take-over was too slow.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg

from application.segment import Segment
from infrastructure.settings import ApiKey, Settings
from interfaces.bootstrap import migrate
from projections.views import PROJECTIONS
from tests.chaos.run import Chaos, Client, Plan
from tests.cluster.netns import Sandbox
from tests.support.processes import ROOT, http_ready, service_env, wait_until

HOSTS = ("db", "web-a", "web-b", "worker-a", "worker-b", "parts-a", "parts-b")
PARTS_HOSTS = ("parts-a", "parts-b")
SINGLE_ACTIVE = ("relay", "projector", "saga-runner")
WEB_PORT = 8000
# The lease's settings the take-over figures are measured with.
LEASE_SECONDS = 3.0
LEASE_RENEW_SECONDS = 0.5
# Targets: p50 and max of the take-over times.
TAKEOVER_P50 = 3.0
TAKEOVER_MAX = 10.0
# Segments of each view and of the saga runner.
SEGMENTS = 2


class LeaseMonitor:
    """Polls the leases from outside every host; each change of token is a take-over,
    timed from the previous term's last expiry to the new term's start."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.takeovers: list[dict[str, Any]] = []
        self._seen: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def holder_of(self, name: str) -> str | None:
        row = self._seen.get(name)
        return None if row is None else str(row["holder"])

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.wait(0.05):
            try:
                if conn is None:
                    conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=2)
                rows = conn.execute(
                    "SELECT name, holder, token, acquired_at, expires_at FROM leases"
                ).fetchall()
            except psycopg.Error:
                conn = None
                continue
            for name, holder, token, acquired_at, expires_at in rows:
                before = self._seen.get(name)
                if before is not None and token != before["token"]:
                    self.takeovers.append(
                        {
                            "lease": name,
                            "from": before["holder"],
                            "to": holder,
                            "seconds": round(
                                (acquired_at - before["expires_at"]).total_seconds(), 3
                            ),
                            "from_pid": int(before["holder"].rsplit(":", 2)[1]),
                            "seen_at": time.monotonic(),
                        }
                    )
                self._seen[name] = {"holder": holder, "token": token, "expires_at": expires_at}


class Cluster(Chaos):
    """The chaos harness on hosts: its clients, books and report, its faults the hosts'."""

    def __init__(
        self,
        plan: Plan,
        database_url: str,
        broker_url: str,
        work: Path,
        sandbox: Sandbox,
        cuts: int,
        services_env: dict[str, str],
    ) -> None:
        super().__init__(plan, database_url, broker_url, work)
        # Where the db host's servers live (scripts/test-services.sh), to restart them.
        self.services_env = services_env
        # The harness's loopback proxies are not used: the hosts' network is cut instead.
        self.pg.close()
        if self.mq is not None:
            self.mq.close()
        self.mq = None
        self.log.touch()
        self.sandbox = sandbox
        self.cuts = cuts
        self.key = secrets.token_urlsafe(24)
        scopes = frozenset({"commands:write", "commands:read", "admin"})
        entry = ApiKey("cluster", scopes, ApiKey.digest_of(self.key)).line()
        self.env = service_env(
            database_url,
            broker_url,
            f"cluster.{plan.seed}",
            # Its own host's address, whatever it is: the namespace has no other.
            WEB_HOST="0.0.0.0",  # noqa: S104
            WEB_PORT=str(WEB_PORT),
            WEB_WORKERS="2",
            WORKER_CONCURRENCY="4",
            API_KEYS=entry,
            COMMAND_QUEUE_TYPE="quorum",
            PART_LEASE_SECONDS=str(LEASE_SECONDS),
            PART_LEASE_RENEW_SECONDS=str(LEASE_RENEW_SECONDS),
            PAYMENT_DEADLINE_SECONDS="8",
            FAKE_GATEWAY_SLOW_SECONDS="10",
            COMMAND_MAX_ATTEMPTS="4",
            COMMAND_RETRY_BASE_DELAY="0.2",
            COMMAND_RETRY_MAX_DELAY="3",
            COMMAND_LEASE_SECONDS="60",
            LOG_LEVEL="INFO",
            # Each view and the saga runner in two segments: the two parts hosts share
            # them (and the relay is active on one, standby on the other).
            VIEW_SEGMENTS=str(SEGMENTS),
            SAGA_SEGMENTS=str(SEGMENTS),
        )
        self.env.pop("COMMAND_MODULES")
        self.processes: list[tuple[str, str, subprocess.Popen[bytes]]] = []
        self.monitor = LeaseMonitor(database_url)

    def reader_settings(self) -> Settings:
        return replace(super().reader_settings(), view_segments=SEGMENTS)

    def client(self, number: int) -> Client:
        web = self.sandbox.hosts["web-a" if number % 2 == 0 else "web-b"]
        headers = {"Authorization": f"Bearer {self.key}", "Prefer": "wait=5"}
        return Client(WEB_PORT, self.tally, host=web.address, headers=headers)

    def launch(self, host: str, part: str) -> None:
        log = self.work / f"{host}.{part}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                self.sandbox.hosts[host].argv([sys.executable, "-m", "interfaces.cli.main", part]),
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes.append((host, part, process))

    def start(self) -> None:
        self.monitor.start()
        for host in ("web-a", "web-b"):
            self.launch(host, "web")
        for host in ("worker-a", "worker-b"):
            self.launch(host, "worker")
        for part in SINGLE_ACTIVE:
            self.launch("parts-a", part)
        wait_until(lambda: self.monitor.holder_of("relay") is not None, 60, "a relay to lead")
        for part in SINGLE_ACTIVE:
            self.launch("parts-b", part)
        for host in ("web-a", "web-b"):
            address = self.sandbox.hosts[host].address
            wait_until(http_ready(f"http://{address}:{WEB_PORT}/health"), 60, f"{host} to answer")

    def stop(self) -> int:
        for _, _, process in self.processes:
            if process.poll() is None:
                process.terminate()
        for _, _, process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.monitor.stop()
        return 0

    def active_parts_host(self) -> str:
        holder = self.monitor.holder_of("relay") or ""
        for host in PARTS_HOSTS:
            pids = {p.pid for h, _, p in self.processes if h == host}
            # The holder is part@host:pid:nonce; ip netns exec runs the part as the pid.
            if any(f":{pid}:" in holder for pid in pids):
                return host
        return PARTS_HOSTS[0]

    def schedule(self) -> list[tuple[str, str, float]]:
        """The host cut-offs, a worker host lost, and ``make chaos``'s faults that fit
        hosts: each single-active part's active process SIGKILLed and a web host's web
        process with its workers (each started again, as its host's service manager
        would), and the database host's network cut."""
        faults: list[tuple[str, str, float]] = [
            ("cut-active", "parts", 2 * LEASE_SECONDS + 2) for _ in range(self.cuts)
        ]
        faults += [("kill-active", part, 0.0) for part in SINGLE_ACTIVE]
        faults.append(("kill-web", "web-a", 0.0))
        faults.append(("cut-host", "db", 5.0))
        if self.plan.server_restarts:
            # A crash of PostgreSQL (every lease's holder loses it at once) and a stop of
            # RabbitMQ's application, as make chaos has them.
            faults += [("restart", "postgresql", 3.0), ("restart", "rabbitmq", 5.0)]
        self.random.shuffle(faults)
        faults.insert(len(faults) // 2, ("kill-host", "worker-b", 0.0))
        return faults

    def fault(self, kind: str, target: str, seconds: float = 0.0) -> None:
        at = round(time.monotonic() - self.began, 1)
        if kind == "cut-active":
            host = self.active_parts_host()
            self.faults.append({"at": at, "fault": "cut", "target": host, "seconds": seconds})
            self.sandbox.cut(host)
            time.sleep(seconds)
            self.sandbox.restore(host)
        elif kind == "kill-active":
            lease = {
                "relay": "relay",
                "projector": "projection:command_registry" + Segment(0, SEGMENTS).label,
                "saga-runner": "saga-runner" + Segment(0, SEGMENTS).label,
            }[target]
            holder = self.monitor.holder_of(lease) or ""
            for host, part, process in list(self.processes):
                if part == target and f":{process.pid}:" in holder and process.poll() is None:
                    process.kill()
                    process.wait()
                    self.faults.append({"at": at, "fault": "kill", "target": f"{host}.{part}"})
                    time.sleep(1.0)
                    self.launch(host, part)
        elif kind == "kill-web":
            for host, part, process in list(self.processes):
                if host == target and part == "web" and process.poll() is None:
                    # A crash of the whole service: the master stopped first, so that it
                    # starts no worker in place of those killed, then everything killed.
                    process.send_signal(signal.SIGSTOP)
                    subprocess.run(["pkill", "-KILL", "-P", str(process.pid)], check=False)
                    process.kill()
                    process.wait()
                    self.faults.append({"at": at, "fault": "kill", "target": f"{host}.web"})
                    time.sleep(1.0)
                    self.launch(host, "web")
                    address = self.sandbox.hosts[host].address
                    wait_until(
                        http_ready(f"http://{address}:{WEB_PORT}/health"), 60, f"{host} back"
                    )
        elif kind == "cut-host":
            self.faults.append({"at": at, "fault": "cut", "target": target, "seconds": seconds})
            self.sandbox.cut(target)
            time.sleep(seconds)
            self.sandbox.restore(target)
        elif kind == "restart":
            self.faults.append({"at": at, "fault": "restart", "target": target})
            server = "postgres" if target == "postgresql" else "rabbitmq"
            self.on_db_host(f"stop_{server}")
            time.sleep(seconds)
            self.on_db_host(f"start_{server}")
        elif kind == "kill-host":
            killed = self.sandbox.kill_all(target)
            self.faults.append({"at": at, "fault": "kill-host", "target": target, "pids": killed})

    def on_db_host(self, call: str) -> None:
        """Run ``tests.support.servers.<call>()`` on the db host (its servers listen
        there, so they must be started there)."""
        code = f"from tests.support import servers; servers.{call}()"
        subprocess.run(
            self.sandbox.hosts["db"].argv([sys.executable, "-c", code]),
            env={**os.environ, **self.services_env},
            cwd=ROOT,
            check=True,
            timeout=180,
        )

    def audit(self, container: Any, reservation_ids: list[str]) -> dict[str, Any]:
        """The books, and each web host's streams, while the hosts still run."""
        report = super().audit(container, reservation_ids)
        commands = [str(c) for c in list(self.commands(container))[:6]]
        report["problems"] += self.streams(commands)
        report["problems"] += self.unheld_leases()
        report["balanced"] = not report["problems"]
        return report

    def expected_leases(self) -> set[str]:
        """Every lease the parts take: the relay's, each segment's of each view and of
        the saga runner."""
        labels = [segment.label for segment in Segment.all(SEGMENTS)]
        return {
            "relay",
            *(f"saga-runner{label}" for label in labels),
            *(f"projection:{p.name}{label}" for p in PROJECTIONS for label in labels),
        }

    def unheld_leases(self, timeout: float = 20.0) -> list[str]:
        """After every fault (the database restarted, cut off, hosts cut and back), each
        lease has a live holder again within ``timeout``; the ones that do not."""
        deadline = time.monotonic() + timeout
        while True:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                held = {
                    name
                    for (name,) in conn.execute(
                        "SELECT name FROM leases WHERE expires_at > clock_timestamp()"
                    ).fetchall()
                }
            missing = sorted(self.expected_leases() - held)
            if not missing or time.monotonic() > deadline:
                return [f"lease {name} has no holder" for name in missing]
            time.sleep(0.5)

    def streams(self, command_ids: list[str]) -> list[str]:
        """Each web host's SSE stream of a few commands ends at their terminal status."""
        problems = []
        for n, command_id in enumerate(command_ids):
            web = self.sandbox.hosts["web-a" if n % 2 == 0 else "web-b"]
            conn = http.client.HTTPConnection(web.address, WEB_PORT, timeout=30)
            try:
                conn.request(
                    "GET",
                    f"/commands/{command_id}/events",
                    headers={"Authorization": f"Bearer {self.key}"},
                )
                body = conn.getresponse().read().decode()
            except (OSError, http.client.HTTPException) as error:
                problems.append(f"SSE of {command_id} on {web.name}: {error}")
                continue
            finally:
                conn.close()
            terminal = ('"succeeded"', '"failed"', '"dead_lettered"')
            if not any(status in body for status in terminal):
                problems.append(f"SSE of {command_id} on {web.name} ended without an outcome")
        return problems


def takeover_figures(
    takeovers: list[dict[str, Any]], faults: list[dict[str, Any]]
) -> dict[str, Any]:
    """The take-overs that followed the loss of a holder (its host cut off, its process
    killed), timed; apart from them, the leases taken again after the database's host
    was cut off (every holder lost it at once) and those handed over to balance the
    views. Each take-over belongs to the last fault before it."""
    losses, others = [], []
    for takeover in takeovers:
        before = [f for f in faults if f["at"] <= takeover["seen_at"]]
        cause = before[-1] if before else None
        # A cut of the db host or a restart of its servers: every holder lost its lease
        # at once, and took it again (not a fail-over).
        lost = cause is not None and (
            cause["fault"] == "kill" or (cause["fault"] == "cut" and cause["target"] != "db")
        )
        if cause is not None and lost and takeover["from"] != takeover["to"]:
            losses.append({**takeover, "after": f"{cause['fault']} {cause['target']}"})
        else:
            others.append(takeover)
    times = [t["seconds"] for t in losses]
    return {
        "count": len(times),
        "p50_seconds": statistics.median(times) if times else None,
        "max_seconds": max(times) if times else None,
        "lease_seconds": LEASE_SECONDS,
        "renew_seconds": LEASE_RENEW_SECONDS,
        "after_losses": losses,
        "others": others,
    }


def run(plan: Plan, cuts: int, work: Path) -> dict[str, Any]:
    """One cluster run; returns its report."""
    work.mkdir(parents=True, exist_ok=True)
    sandbox = Sandbox()
    sandbox.create(HOSTS)
    services: subprocess.Popen[bytes] | None = None
    try:
        urls = work / "services.env"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEST_")}
        env["TEST_SERVICES_HOST"] = sandbox.hosts["db"].address
        services = subprocess.Popen(
            sandbox.hosts["db"].argv(
                [
                    str(ROOT / "scripts" / "test-services.sh"),
                    "sh",
                    "-c",
                    f'env | grep -E "^(TEST_|RABBITMQ_|ERL_)" > "{urls}"; exec sleep 100000',
                ]
            ),
            env=env,
            cwd=ROOT,
            stdout=(work / "services.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: urls.exists() and urls.stat().st_size > 0, 180, "the servers")
        found = dict(line.split("=", 1) for line in urls.read_text().splitlines() if "=" in line)
        database_url, broker_url = found["TEST_DATABASE_URL"], found["TEST_BROKER_URL"]
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("ALTER DATABASE boxoffice_test SET synchronous_commit = on")
        migrate(Settings(database_url=database_url))
        cluster = Cluster(plan, database_url, broker_url, work, sandbox, cuts, found)
        report = cluster.run()
        for takeover in cluster.monitor.takeovers:
            takeover["seen_at"] = round(takeover["seen_at"] - cluster.began, 1)
        report["takeovers"] = takeover_figures(cluster.monitor.takeovers, cluster.faults)
        report["fenced_writes_refused"] = sum(
            log.read_text(errors="replace").count("nothing written")
            for log in work.glob("parts-*.log")
        )
        return report
    finally:
        if services is not None:
            services.terminate()
            try:
                services.wait(60)
            except subprocess.TimeoutExpired:
                services.kill()
        sandbox.remove()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reservations", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--cuts", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    plan = Plan(
        reservations=args.reservations,
        clients=args.clients,
        shows=2,
        seats_per_show=40,
        seed=args.seed,
        transport="amqp",
        outage_seconds=0,
        server_restarts=True,
        fault_gap=3.0,
    )
    work = args.work or Path(tempfile.mkdtemp(prefix="boxoffice-cluster."))
    report = run(plan, args.cuts, work)
    print(json.dumps(report, indent=2, default=str))
    takeovers = report["takeovers"]
    fast = (
        takeovers["count"] > 0
        and takeovers["p50_seconds"] <= TAKEOVER_P50
        and takeovers["max_seconds"] <= TAKEOVER_MAX
    )
    return 0 if report["balanced"] and fast else 1


if __name__ == "__main__":
    sys.exit(main())
