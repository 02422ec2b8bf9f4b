"""What a user would otherwise pick, run by ``make bench`` on the same servers as Boxoffice.

- ``bare_flask``: Flask under the same gunicorn settings; JSON in, 202 out.
- ``noop_celery``: Celery no-op tasks over the same RabbitMQ, late acks and confirms.
- ``hand_built`` / ``hand_celery``: the service of an afternoon: Flask → ``delay()`` →
  a task that INSERTs a row, its status in Celery's database result backend.

Configured by ``BENCH_BROKER_URL``, ``BENCH_DATABASE_URL`` and ``BENCH_QUEUE``; nothing
connects at import except what Celery itself does lazily.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
from celery import Celery
from flask import Flask, Response, json, request

QUEUE = os.environ.get("BENCH_QUEUE", "bench")


def _celery(name: str, **config: Any) -> Celery:
    app = Celery(name, broker=os.environ.get("BENCH_BROKER_URL", "memory://"))
    app.conf.update(
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        broker_transport_options={"confirm_publish": True},
        worker_prefetch_multiplier=4,
        broker_connection_retry_on_startup=True,
        **config,
    )
    return app


bare_flask = Flask("bare")


@bare_flask.put("/shows/<show_id>")
def bare_accept(show_id: str) -> Response:
    """Parse the JSON body and answer 202, as a command endpoint at its cheapest."""
    body = request.get_json(force=True)
    answer = {"show_id": show_id, "fields": len(body)}
    return Response(json.dumps(answer), status=202, mimetype="application/json")


noop_celery = _celery("noop", task_ignore_result=True)


@noop_celery.task(name="bench.noop")
def noop() -> None:
    """Nothing: the cost of a task's round trip through the broker."""


def _database_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres")


hand_celery = _celery(
    "hand",
    result_backend="db+" + _database_url().replace("postgresql://", "postgresql+psycopg://", 1),
    result_extended=True,
)


@hand_celery.task(name="bench.create_show")
def create_show(show_id: str, body: dict[str, Any]) -> str:
    """INSERT the show: the effect a hand-built command has."""
    with psycopg.connect(_database_url(), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO hand_shows (show_id, body) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (show_id, json.dumps(body)),
        )
    return show_id


hand_built = Flask("hand")


@hand_built.put("/shows/<show_id>")
def hand_accept(show_id: str) -> Response:
    """Queue the command and answer 202 with its task id."""
    body = request.get_json(force=True)
    result = create_show.delay(show_id, body)
    answer = {"task_id": result.id}
    return Response(json.dumps(answer), status=202, mimetype="application/json")


def create_hand_table(database_url: str) -> None:
    """The hand-built service's table."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS hand_shows (show_id text PRIMARY KEY, body jsonb)")
