"""The read models' documents, each at its projection's ``path``: ``GET /shows/{id}``,
``/reservations/{id}``, ``/sagas/{id}``, generated from :mod:`projections.views`."""

from __future__ import annotations

from functools import partial

from flask import Blueprint, Response, jsonify

from interfaces.http.auth import READ, authenticate
from interfaces.http.consistency import await_consistency
from interfaces.http.context import container
from interfaces.http.problems import Problem
from interfaces.http.submit import flask_rule
from projections.document_projection import DocumentProjection


def document_endpoints(projections: tuple[type[DocumentProjection], ...]) -> Blueprint:
    """A blueprint serving the documents of every projection that has a ``path``."""
    blueprint = Blueprint("documents", __name__)
    for projection in projections:
        if projection.path is not None:
            blueprint.add_url_rule(
                flask_rule(projection.path),
                endpoint=projection.name,
                view_func=partial(read_document, projection),
                methods=["GET"],
            )
    return blueprint


def read_document(projection: type[DocumentProjection], **path: str) -> Response:
    """The document the path names, from its read model (honouring Consistency-Token)."""
    built = container()
    caller = authenticate(built.settings.api_keys, READ)
    ((name, ident),) = path.items()
    kind = name.removesuffix("_id")
    key = projection.key(ident)
    if key is None:
        raise Problem(404, "Not found", f"no {kind} {ident}")
    await_consistency(built, projection.name)
    document = projection.find(built.read_models, key)
    if document is None or (projection.private and not caller.sees(document.get("client"))):
        raise Problem(404, "Not found", f"no {kind} {ident}")
    document.pop("position")
    return jsonify(document)
