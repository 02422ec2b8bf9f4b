"""The benchmark's long log (step (f)): the seed leaves it as a long-lived log is, so that
what (f) measures is the service on a long log, not the aftermath of a bulk insert."""

from __future__ import annotations

import psycopg
import pytest

from benchmarks.run import seed_log
from infrastructure.event_store import build_application, build_tracker
from infrastructure.settings import Settings
from interfaces.bootstrap import migrate
from tests.support.commands import Tally

pytestmark = pytest.mark.postgres


def test_the_seeded_log_is_vacuumed_analysed_and_every_follower_is_at_its_head(
    database_url: str,
) -> None:
    settings = Settings(database_url=database_url)
    tables = migrate(settings)
    app = build_application(settings)
    tally = Tally("template")
    tally.bump()
    tally.bump()
    app.save(tally)
    template = list(app.recorder.select_notifications(start=None, limit=100))
    events_table = app.recorder.events_table_name  # type: ignore[attr-defined]
    app.close()

    written = seed_log(database_url, template, 500)

    assert written == 500
    with psycopg.connect(database_url) as conn:
        events, head = conn.execute(
            psycopg.sql.SQL("SELECT count(*), max(notification_id) FROM {}").format(
                psycopg.sql.Identifier(events_table)
            )
        ).fetchone() or (0, 0)
        vacuumed, analysed, unanalysed = conn.execute(
            "SELECT last_vacuum IS NOT NULL, last_analyze IS NOT NULL, n_mod_since_analyze "
            "FROM pg_stat_user_tables WHERE relname = %s",
            [events_table],
        ).fetchone() or (False, False, -1)
    assert events == len(template) + 500
    # Autovacuum would get to it only later, during the measured run (and never for a
    # log this small): the seed vacuums and analyses it itself.
    assert (vacuumed, analysed, unanalysed) == (True, True, 0)
    trackers = [t.removesuffix("_tracking") for t in tables if t.endswith("_tracking")]
    assert trackers
    for name in trackers:
        tracker = build_tracker(settings, name)
        try:
            assert tracker.max_tracking_id(app.name) == head
        finally:
            tracker.datastore.close()
