"""The composition root takes its adapters from the settings."""

from __future__ import annotations

from application.pipeline import BoxofficeApplication
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
