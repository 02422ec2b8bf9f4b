"""Schema creation: every table the service needs, created once.

:func:`migrate` runs as ``boxoffice migrate`` (and in ``boxoffice serve``) before the
other processes start, which all run with ``CREATE_TABLE`` off. The composition root
says which views there are (:func:`interfaces.bootstrap.migrate`).
"""

from __future__ import annotations

from collections.abc import Sequence

from application.event_log import BoxofficeApplication
from infrastructure.admission_tickets import PostgresTickets
from infrastructure.direct_publish import PublishedMarks
from infrastructure.event_store import build_application, build_tracker, build_view
from infrastructure.lease import create_lease_table
from infrastructure.leased_work import create_members_table
from infrastructure.log_recorder import TransactionOrderedRecorder
from infrastructure.payment_gateway import PostgresLedger
from infrastructure.relay import SAFETY_NET_TRACKER
from infrastructure.settings import Settings
from infrastructure.stall_log import StallLog
from infrastructure.webhooks.dispatcher import WebhookDispatcher
from infrastructure.webhooks.outbox import WebhookOutbox
from projections.document_view import DocumentView

# The followers that keep only a position: the relay, its safety net and the saga runner.
TRACKERS = ("relay", SAFETY_NET_TRACKER, "saga_runner")


def migrate(settings: Settings, views: Sequence[tuple[str, type[DocumentView]]]) -> list[str]:
    """Create every table the service needs, once, with the ``views`` (each a name and
    its view class); returns the tables' names.

    Raises :class:`~infrastructure.log_recorder.LogAheadOfTransactionIdsError` for a log
    that new events could not follow (a database restored from a logical dump).
    """
    app = build_application(settings, create_table=True)
    if isinstance(app.recorder, TransactionOrderedRecorder):
        app.recorder.check_ids_ahead()
    PostgresLedger(app.recorder.datastore).create_table()  # type: ignore[attr-defined]
    StallLog(app.recorder.datastore).create_table()  # type: ignore[attr-defined]
    PostgresTickets(app.recorder.datastore).create_table()  # type: ignore[attr-defined]
    PublishedMarks(app.recorder.datastore).create_table()  # type: ignore[attr-defined]
    create_lease_table(app.recorder.datastore)  # type: ignore[attr-defined]
    with app.recorder.datastore.transaction(commit=True) as curs:  # type: ignore[attr-defined]
        create_members_table(curs)
    app.close()
    tables = [
        f"{BoxofficeApplication.name.lower()}_events",
        "fake_gateway_charges",
        "follower_stalls",
        "admission_tickets",
        "admission_schedule",
        PublishedMarks.TABLE,
        "leases",
        "lease_members",
    ]
    for name in TRACKERS:
        build_tracker(settings, name, create_table=True).datastore.close()
        tables.append(f"{name}_tracking")
    outbox = build_view(settings, WebhookDispatcher.name, WebhookOutbox, create_table=True)
    outbox.datastore.close()
    tables += ["webhook_deliveries", f"{WebhookDispatcher.name}_tracking"]
    for name, view_class in views:
        view = build_view(settings, name, view_class, create_table=True)
        view.datastore.close()
        tables += [view_class.table, f"{name}_tracking"]
    return tables
