"""The operator's use cases: inspect and repair commands, sagas and views.

Called alike by the CLI (``boxoffice commands|deadletters|sagas|projections``) and the
``/admin`` HTTP endpoints, each takes an :class:`~application.operations.ports.Operator`
(the ports the composition root fills in) and checked values, and returns JSON-ready
data, so that ``--json`` and HTTP give the same documents. Parsing the operator's
arguments is the interfaces' job (:mod:`interfaces.arguments`).
"""

from __future__ import annotations


class NotFoundError(LookupError):
    """Raised when the command, saga or view asked for does not exist."""


class RefusedError(ValueError):
    """Raised when an operation does not apply to what it was asked of."""
