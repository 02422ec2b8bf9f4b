"""``make chaos``: reservations under load while every part and server is made to fail,
then the books: nothing lost, nothing twice, no seat or money left wrong.

The service runs under ``boxoffice serve`` (web, worker, relay, projector, saga runner)
against PostgreSQL, with ``synchronous_commit`` on for its database, and RabbitMQ or the
embedded filesystem transport. Its parts reach both servers through loopback proxies.
Sixteen clients place reservations with every card token, repeat some requests with the
same ``Idempotency-Key``, and cancel some within 0.4 s; like any careful client they
send a request again (same key) when it fails with a 5xx or a broken connection. A
schedule drawn from the seed meanwhile SIGKILLs parts (``serve`` restarts them), cuts
the network to either server, restarts PostgreSQL (immediate stop: a crash) and stops
RabbitMQ for a while. Then it waits until everything has settled and checks, from the
event store:

- every accepted command has exactly one terminal outcome, and none is left unfinished;
- no domain event is duplicated (a reservation is paid, refunded or ended once at most);
- the seat and money invariants of ``tests/support/invariants.py`` (seats held or sold
  only for live reservations, every charge of an unconfirmed reservation refunded, no
  one waiting for free seats, every saga ended or waiting);
- every read model equals a fresh rendering of the log.

Usage: ``python -m tests.chaos.run [--reservations N] [--seed S] [--transport amqp|filesystem]``
under ``scripts/test-services.sh`` (``make chaos`` runs both transports). It prints a
JSON report and exits 1 if the books do not balance.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from application.command import Command
from application.operations import sagas as saga_ops
from domain.payment import Payment
from domain.reservation import Reservation
from domain.reservation_saga import ReservationSaga
from domain.show import Show
from infrastructure.settings import DatabaseUrl, Settings
from interfaces.bootstrap import Container, bootstrap, migrate
from projections.views import PROJECTIONS
from tests.conftest import fresh_database
from tests.e2e.conftest import free_port
from tests.support import servers
from tests.support.faults import TcpProxy
from tests.support.invariants import violations
from tests.support.processes import ROOT, http_ready, service_env, wait_until

# Every card token; a slow one holds a worker process for longer than the deadline.
CARDS = (
    *("tok_approve",) * 4,
    "tok_decline",
    "tok_flaky",
    "tok_outage",
    "tok_slow",
)
PARTS = ("web", "worker", "relay", "projector", "saga-runner")
DEADLINE_SECONDS = 8
TERMINAL_EVENTS = ("CommandSucceeded", "CommandFailed", "CommandDeadLettered")


@dataclass
class Plan:
    """What one run does, drawn from its seed."""

    reservations: int
    clients: int
    shows: int
    seats_per_show: int
    seed: int
    transport: str
    outage_seconds: float
    server_restarts: bool
    fault_gap: float = 4.0


@dataclass
class Tally:
    """What the clients saw."""

    requests: int = 0
    resent: int = 0
    answers: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, status: int, resent: bool) -> None:
        with self.lock:
            self.requests += 1
            self.resent += resent
            self.answers[status] += 1


class Client:
    """One client's keep-alive connection to the web, re-made when it breaks."""

    def __init__(
        self,
        port: int,
        tally: Tally,
        host: str = "127.0.0.1",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.tally = tally
        self.host = host
        self.headers = headers or {}
        self.conn: http.client.HTTPConnection | None = None

    def send(self, method: str, path: str, body: dict[str, Any], key: str) -> int:
        """Send until the service answers something other than a 5xx (same key each time)."""
        payload = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key, **self.headers}
        deadline = time.monotonic() + 600
        resent = False
        while True:
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.conn.request(method, path, body=payload, headers=headers)
                answer = self.conn.getresponse()
                text = answer.read()
                status = answer.status
                if status == 503 and b"dead-lettered" in text:
                    # Prefer: wait's answer for a command that ran and was dead-lettered:
                    # an outcome, not a failure to send again.
                    self.tally.count(status, resent)
                    return status
            except (OSError, http.client.HTTPException):
                self.conn = None
                status = 599
            self.tally.count(status, resent)
            if status < 500:
                return status
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method} {path} kept failing ({status})")
            resent = True
            time.sleep(0.2)


class Chaos:
    """The service under ``serve``, its proxies, its clients and its faults."""

    def __init__(self, plan: Plan, database_url: str, broker_url: str, work: Path) -> None:
        self.plan = plan
        self.random = random.Random(plan.seed)
        self.database_url = database_url
        self.work = work
        self.tally = Tally()
        self.faults: list[dict[str, Any]] = []
        self.pg = TcpProxy.to(database_url, 5432)
        self.mq = TcpProxy.to(broker_url, 5672) if plan.transport == "amqp" else None
        self.port = free_port()
        self.log = work / "serve.log"
        env = service_env(
            self.pg.route(database_url),
            self.mq.route(broker_url) if self.mq else "filesystem://",
            f"chaos.{plan.seed}.{uuid.uuid4().hex[:8]}",  # a killed run's queue stays behind
            WEB_PORT=str(self.port),
            WEB_WORKERS="2",
            # Slow charges sleep in the gateway: processes, not cores, are what they use.
            WORKER_CONCURRENCY="8",
            BOXOFFICE_VAR_DIR=str(work / "var"),
            PAYMENT_DEADLINE_SECONDS=str(DEADLINE_SECONDS),
            FAKE_GATEWAY_SLOW_SECONDS=str(DEADLINE_SECONDS + 2),
            COMMAND_MAX_ATTEMPTS="4",
            COMMAND_RETRY_BASE_DELAY="0.2",
            COMMAND_RETRY_MAX_DELAY="3",
            COMMAND_LEASE_SECONDS="60",
            LOG_LEVEL="WARNING",
        )
        env.pop("COMMAND_MODULES")
        self.env = env
        self.serve: subprocess.Popen[bytes] | None = None

    # The service

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.serve = subprocess.Popen(
                [sys.executable, "-m", "interfaces.cli.main", "serve"],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(http_ready(f"http://127.0.0.1:{self.port}/health"), 60, "serve to answer")

    def stop(self) -> int:
        assert self.serve is not None
        self.serve.send_signal(signal.SIGTERM)
        try:
            return self.serve.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.serve.pid, signal.SIGKILL)
            return -9

    def part_pid(self, part: str) -> int | None:
        found = re.findall(rf"{part} started \(pid (\d+)\)", self.log.read_text(errors="replace"))
        return int(found[-1]) if found else None

    # Faults

    def fault(self, kind: str, target: str, seconds: float = 0.0) -> None:
        self.faults.append(
            {"at": round(time.monotonic() - self.began, 1), "fault": kind, "target": target}
        )
        if kind == "kill":
            pid = self.part_pid(target)
            if pid is not None:
                try:
                    # The whole group of a part would be its children too; serve made
                    # each part in its own process, so kill the part and its children.
                    subprocess.run(["pkill", "-KILL", "-P", str(pid)], check=False)
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        elif kind == "cut":
            proxy = self.pg if target == "postgresql" else self.mq
            if proxy is not None:
                proxy.cut()
                time.sleep(seconds)
                proxy.restore()
        elif kind == "restart" and target == "postgresql":
            servers.stop_postgres()
            time.sleep(seconds)
            servers.start_postgres()
        elif kind == "restart" and target == "rabbitmq":
            servers.stop_rabbitmq()
            time.sleep(seconds)
            servers.start_rabbitmq()

    def schedule(self) -> list[tuple[str, str, float]]:
        """Every fault once at least, in an order drawn from the seed."""
        faults: list[tuple[str, str, float]] = [("kill", part, 0.0) for part in PARTS]
        faults += [("kill", "worker", 0.0), ("kill", "relay", 0.0)]
        faults.append(("cut", "postgresql", 5.0))
        if self.mq is not None:
            faults.append(("cut", "rabbitmq", 5.0))
        if self.plan.server_restarts:
            faults.append(("restart", "postgresql", 3.0))
            if self.mq is not None:
                faults.append(("restart", "rabbitmq", self.plan.outage_seconds))
        self.random.shuffle(faults)
        return faults

    def inject(self, faults: list[tuple[str, str, float]], stop: threading.Event) -> None:
        for kind, target, seconds in faults:
            gap = self.plan.fault_gap
            if stop.wait(self.random.uniform(gap / 2, gap * 1.5)):
                return
            self.fault(kind, target, seconds)

    # Load

    def load(self, seconds: float) -> list[str]:
        """Shows, then reservations from every client spread over about ``seconds``;
        returns the reservation ids."""
        setup = self.client(0)
        for s in range(self.plan.shows):
            seats = [f"R{i // 10}S{i % 10}" for i in range(self.plan.seats_per_show)]
            body = {
                "title": f"Show {s}",
                "starts_at": "2027-01-01T20:00:00Z",
                "seats": seats,
                "price_cents": 1000,
            }
            setup.send("PUT", f"/shows/show-{s}", body, f"create-show-{s}")
        per_client = self.plan.reservations // self.plan.clients
        ids: list[str] = []
        threads = []
        for c in range(self.plan.clients):
            mine = [f"r-{self.plan.seed}-{c}-{i}" for i in range(per_client)]
            ids += mine
            rng = random.Random(f"{self.plan.seed}-{c}")
            pause = seconds / max(per_client, 1)
            threads.append(
                threading.Thread(
                    target=self._client, args=(self.client(c), mine, rng, pause), daemon=True
                )
            )
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return ids

    def client(self, number: int) -> Client:
        """The ``number``-th client's connection to the web."""
        return Client(self.port, self.tally)

    def _client(
        self, client: Client, reservation_ids: list[str], rng: random.Random, pause: float
    ) -> None:
        for reservation_id in reservation_ids:
            time.sleep(rng.uniform(0, 2 * pause))
            show = rng.randrange(self.plan.shows)
            seats = rng.sample(range(self.plan.seats_per_show), rng.choice((1, 1, 2, 3)))
            body = {
                "show_id": f"show-{show}",
                "customer_id": f"c-{reservation_id}",
                "seats": [f"R{i // 10}S{i % 10}" for i in seats],
                "card_token": rng.choice(CARDS),
            }
            client.send("PUT", f"/reservations/{reservation_id}", body, f"place-{reservation_id}")
            if rng.random() < 0.1:  # a duplicate request: same key, same body
                client.send(
                    "PUT", f"/reservations/{reservation_id}", body, f"place-{reservation_id}"
                )
            if rng.random() < 0.15:  # a quick cancel
                time.sleep(rng.uniform(0.0, 0.4))
                client.send(
                    "POST", f"/reservations/{reservation_id}/cancel", {}, f"cancel-{reservation_id}"
                )

    def run(self) -> dict[str, Any]:
        self.began = time.monotonic()
        self.start()
        stop = threading.Event()
        faults = self.schedule()
        # The load lasts about as long as the faults, so that every fault meets traffic.
        span = sum(self.plan.fault_gap + seconds for _, _, seconds in faults)
        injector = threading.Thread(target=self.inject, args=(faults, stop), daemon=True)
        injector.start()
        reservation_ids = self.load(span)
        injector.join()  # every fault is injected, even if the load finished first
        loaded = time.monotonic() - self.began
        container = bootstrap(self.reader_settings())
        settled = self.settle(container)
        report = self.audit(container, reservation_ids)
        code = self.stop()
        report.update(
            seed=self.plan.seed,
            transport=self.plan.transport,
            seconds={
                "load": round(loaded, 1),
                "settled": round(settled, 1),
                "total": round(time.monotonic() - self.began, 1),
            },
            faults=self.faults,
            requests={
                "sent": self.tally.requests,
                "resent": self.tally.resent,
                "answers": dict(self.tally.answers),
            },
            serve_exit_status=code,
            restarts=len(re.findall(r"restarting it in", self.log.read_text(errors="replace"))),
        )
        container.close()
        self.pg.close()
        if self.mq is not None:
            self.mq.close()
        return report

    # Settling and the books

    def reader_settings(self) -> Settings:
        """The settings of the audit's own reads (the views' segments, say)."""
        return Settings(database_url=self.database_url)

    def settle(self, container: Container) -> float:
        """Wait until no command is unfinished and every view has caught up."""
        began = time.monotonic()

        def quiet() -> bool:
            head = container.app.recorder.max_notification_id() or 0
            commands = self.commands(container)
            if any(not c.is_terminal for c in commands.values()):
                return False
            read = container.read_models
            if any(
                read.position(name) < head and not read.reached(name, head) for name in read.names
            ):
                return False
            # Nothing due either: longer than a payment deadline plus the runner's check.
            time.sleep(DEADLINE_SECONDS + 2)
            return (container.app.recorder.max_notification_id() or 0) == head

        wait_until(quiet, 900, "every command to finish and every view to catch up")
        return time.monotonic() - began

    def ids_of(self, container: Container, *classes: type[Any]) -> list[UUID]:
        prefixes = tuple(f"{c.__module__}:{c.__qualname__}." for c in classes)
        seen: dict[UUID, None] = {}
        start = 0
        while notifications := container.app.recorder.select_notifications(
            start=start, limit=5000, inclusive_of_start=False
        ):
            for n in notifications:
                if n.topic.startswith(prefixes) and n.originator_version == 1:
                    seen[UUID(str(n.originator_id))] = None
            start = notifications[-1].id
        return list(seen)

    def commands(self, container: Container) -> dict[UUID, Command]:
        return {i: container.app.repository.get(i) for i in self.ids_of(container, Command)}

    def audit(self, container: Container, reservation_ids: list[str]) -> dict[str, Any]:
        repo = container.app.repository
        commands = self.commands(container)
        problems: list[str] = []
        for command_id in commands:
            names = [type(e).__name__ for e in container.app.events.get(command_id)]
            outcomes = [e for e in names if e in TERMINAL_EVENTS]
            redriven = names.count("CommandRedriven")
            if len(outcomes) != 1 + redriven:
                problems.append(f"command {command_id} has outcomes {outcomes}")
        shows: list[Show] = [repo.get(i) for i in self.ids_of(container, Show)]
        reservations: dict[str, Reservation] = {}
        for aggregate_id in self.ids_of(container, Reservation):
            reservation: Reservation = repo.get(aggregate_id)
            reservations[reservation.reservation_id] = reservation
            events = Counter(type(e).__name__ for e in container.app.events.get(aggregate_id))
            for name in (
                "ReservationPaid",
                "ReservationRefunded",
                "ReservationPaymentDeclined",
                "ReservationPlaced",
            ):
                if events[name] > 1:
                    problems.append(f"{reservation.reservation_id}: {name} x{events[name]}")
            ends = sum(
                events[n]
                for n in ("ReservationRejected", "ReservationExpired", "ReservationCancelled")
            )
            if ends > 1:
                problems.append(f"{reservation.reservation_id} ended {ends} times")
        found_payments: list[Payment] = [repo.get(i) for i in self.ids_of(container, Payment)]
        payments = {p.reservation_id: p for p in found_payments}
        found_sagas: list[ReservationSaga] = [
            repo.get(i) for i in self.ids_of(container, ReservationSaga)
        ]
        sagas = {saga.reservation_id: saga for saga in found_sagas}
        with psycopg.connect(self.database_url) as conn:
            ledger = {
                key: (bool(approved), bool(refunded))
                for key, approved, refunded in conn.execute(
                    "SELECT key, approved, refunded FROM fake_gateway_charges"
                )
            }
        problems += violations(shows, reservations, payments, sagas, ledger)
        problems += self.views_against_the_log(container)
        problems += self.sagas_replayed(container, list(self.ids_of(container, ReservationSaga)))
        asked = set(reservation_ids)
        missing = asked - set(reservations) - self.refused_places(commands)
        if missing:
            problems.append(
                f"{len(missing)} reservations accepted but never placed: {sorted(missing)[:5]}"
            )
        return {
            "balanced": not problems,
            "problems": problems[:50],
            "commands": len(commands),
            "outcomes": dict(Counter(c.status for c in commands.values())),
            "commands_by_type": dict(Counter(c.command_type for c in commands.values())),
            "reservations": dict(Counter(r.status for r in reservations.values())),
            "charges": {
                "approved": sum(a for a, _ in ledger.values()),
                "refunded": sum(r for _, r in ledger.values()),
            },
        }

    @staticmethod
    def refused_places(commands: dict[UUID, Command]) -> set[str]:
        """Reservations whose place failed (an id taken, a show gone): never placed."""
        return {
            c.payload["reservation_id"]
            for c in commands.values()
            if c.command_type == "PlaceReservation" and c.status == "failed"
        }

    @staticmethod
    def sagas_replayed(container: Container, saga_ids: list[UUID]) -> list[str]:
        """``sagas replay`` of every saga with the unchanged code: each must replay as it
        was recorded, whatever the faults did to its deliveries and deadlines."""
        done = saga_ops.replay(container.operator, saga_ids)
        return [
            f"saga of {s.subject} replays {s.verdict.value}: "
            f"{json.dumps(s.divergence() or s.error)}"
            for s in done.sagas
            if s.verdict.value != "identical"
        ]

    def views_against_the_log(self, container: Container) -> list[str]:
        problems: list[str] = []
        for projection in PROJECTIONS:
            view = container.read_models.views[projection.name]
            for aggregate_id in self.ids_of(container, projection.aggregate):
                expected = projection.stored(container.app.repository.get(aggregate_id))
                row = view.get(aggregate_id)
                actual = {k: v for k, v in (row or {}).items() if k != "position"}
                if json.loads(json.dumps(expected, default=str)) != actual:
                    problems.append(f"{projection.name} row {aggregate_id} differs from the log")
        return problems


def run(plan: Plan, server_database_url: str, broker_url: str, work: Path) -> dict[str, Any]:
    """One chaos run on a fresh database; returns its report."""
    # A fresh work folder too: an earlier run's serve.log would add its restarts to this
    # run's count, and its broker folder (the filesystem transport) its messages.
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with fresh_database(server_database_url) as database_url:
        with psycopg.connect(database_url, autocommit=True) as conn:
            name = DatabaseUrl.parse(database_url).dbname
            # Acknowledged commits must survive an immediate restart.
            conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = on')
        migrate(Settings(database_url=database_url))
        return Chaos(plan, database_url, broker_url, work).run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reservations", type=int, default=1600)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--shows", type=int, default=12)
    parser.add_argument("--seats", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--transport", choices=("amqp", "filesystem"), default="amqp")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds RabbitMQ stays stopped")
    parser.add_argument("--work", type=Path, default=Path("var/chaos"))
    args = parser.parse_args()
    plan = Plan(
        reservations=args.reservations,
        clients=args.clients,
        shows=args.shows,
        seats_per_show=args.seats,
        seed=args.seed,
        transport=args.transport,
        outage_seconds=args.outage,
        server_restarts=servers.available(),
    )
    report = run(
        plan,
        os.environ["TEST_DATABASE_URL"],
        os.environ["TEST_BROKER_URL"],
        args.work / f"{args.transport}-{args.seed}",
    )
    print(json.dumps(report, indent=2))
    return 0 if report["balanced"] else 1


if __name__ == "__main__":
    sys.exit(main())
