"""The OpenAPI document: valid 3.1, complete, and built from the validating schemas."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from openapi_spec_validator import validate

from application.shows import CreateShow
from interfaces.bootstrap import Container
from interfaces.http import create_app


def test_the_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    document = client.get("/openapi.json").get_json()

    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_route_of_the_app_is_documented(container: Container) -> None:
    app = create_app(container)
    document = app.test_client().get("/openapi.json").get_json()
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }

    served = {
        (method, re.sub(r"<(\w+)>", r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        # The console's pages are for a browser, not the API (docs/observability.md).
        if rule.endpoint not in ("static", "openapi.document")
        and not rule.endpoint.startswith("console.")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert served == documented


def test_command_bodies_are_the_schemas_that_validate_requests(client: FlaskClient) -> None:
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    body = schemas["CreateShowBody"]
    expected = CreateShow.model_json_schema()

    # The path's show_id is not in the body.
    assert body["properties"] == {k: v for k, v in expected["properties"].items() if k != "show_id"}
    assert body["additionalProperties"] is False
    assert set(body["required"]) == set(expected["required"]) - {"show_id"}
