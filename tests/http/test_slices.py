"""Adding a command is one handler and one registration: this module is one.

The service loads it through ``COMMAND_MODULES`` like any other; nothing else is
edited, and the command is served, validated and documented.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import Field

from application.catalog import CommandCatalog, CommandSpec, Endpoint
from application.event_log import BoxofficeApplication
from application.payloads import Payload
from application.unit_of_work import UnitOfWork
from infrastructure.settings import Settings
from interfaces.bootstrap import bootstrap
from interfaces.http import create_app
from tests.support.commands import Tally


class BumpMany(Payload):
    """Bump a tally ``times`` times."""

    key: str
    times: Annotated[int, Field(ge=1, le=10)]


def bump_many(uow: UnitOfWork, cmd: BumpMany) -> None:
    tally = uow.find(Tally, Tally.create_id(cmd.key))
    if tally is None:
        tally = Tally(key=cmd.key)
        uow.add(tally)
    for _ in range(cmd.times):
        tally.bump()


def register(catalog: CommandCatalog) -> None:
    catalog.register(
        CommandSpec(
            name="BumpMany",
            payload=BumpMany,
            handler=bump_many,
            target=lambda c: Tally.create_id(c.key),
            resource="/tallies/{key}",
            endpoint=Endpoint("POST", "/tallies/{key}/bumps", "Bump a tally several times"),
        )
    )


def test_a_registered_command_is_served_at_its_endpoint(app: BoxofficeApplication) -> None:
    modules = ("tests.support.commands", "tests.http.test_slices")
    container = bootstrap(Settings(command_modules=modules), application=app)
    client = create_app(container).test_client()

    accepted = client.post("/tallies/t1/bumps", json={"times": 3}, headers={"Idempotency-Key": "a"})

    assert accepted.status_code == 202
    assert accepted.get_json()["links"]["resource"] == "/tallies/t1"
    command_id = UUID(accepted.get_json()["command_id"])
    container.pipeline.execute(command_id, 1, "w")
    assert client.get(f"/commands/{command_id}").get_json()["status"] == "succeeded"
    tally: Tally = app.repository.get(Tally.create_id("t1"))
    assert tally.count == 3


def test_a_registered_command_is_validated_and_documented(app: BoxofficeApplication) -> None:
    modules = ("tests.support.commands", "tests.http.test_slices")
    client = create_app(bootstrap(Settings(command_modules=modules), application=app)).test_client()

    refused = client.post("/tallies/t1/bumps", json={"times": 0, "extra": 1})
    document = client.get("/openapi.json").get_json()

    assert refused.status_code == 400
    assert {e["location"] for e in refused.get_json()["errors"]} == {"body.times", "body.extra"}
    operation = document["paths"]["/tallies/{key}/bumps"]["post"]
    assert operation["operationId"] == "BumpMany"
    body = document["components"]["schemas"]["BumpManyBody"]
    assert body["required"] == ["times"]
    assert body["properties"]["times"]["maximum"] == 10
