"""The composition root takes its adapters from the settings."""

from __future__ import annotations

import pytest
from eventsourcing.popo import POPOTrackingRecorder

from application import shows
from application.catalog import CommandCatalog
from application.event_log import BoxofficeApplication
from application.pipeline import CommandPipeline
from application.reservation_saga import RESERVATION_SAGA
from application.retry import RetryPolicy
from application.saga_runner import ApplicationStore, SagaRunner
from infrastructure.payment_gateway import FakePaymentGateway
from infrastructure.settings import Settings
from interfaces.bootstrap import bootstrap
from tests.support.gateways import DecliningGateway


def test_the_payment_gateway_is_the_fake_unless_another_is_configured(
    app: BoxofficeApplication,
) -> None:
    default = bootstrap(Settings(), application=app)
    configured = bootstrap(
        Settings.from_env({"PAYMENT_GATEWAY": "tests.support.gateways:declining"}),
        application=app,
    )

    assert isinstance(default.services.payment_gateway, FakePaymentGateway)
    assert isinstance(configured.services.payment_gateway, DecliningGateway)


def test_the_sagas_refuse_to_start_without_the_commands_they_issue(
    app: BoxofficeApplication,
) -> None:
    catalog = CommandCatalog()
    shows.register(catalog)  # the show commands only
    pipeline = CommandPipeline(app, catalog, RetryPolicy())

    with pytest.raises(LookupError, match="ChargePayment"):
        SagaRunner(POPOTrackingRecorder(), ApplicationStore(app), pipeline, [RESERVATION_SAGA])
