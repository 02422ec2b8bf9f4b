"""RFC 9457 problem details: every error the API answers is one of these."""

from __future__ import annotations

from typing import Any

from flask import Response, json

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):  # noqa: N818 - an answer to send, not a fault
    """An error answer; raise it anywhere in a request and the app renders it."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        kind: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind or title.lower().replace(" ", "-")
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> Response:
        """This problem as an ``application/problem+json`` response."""
        body: dict[str, Any] = {
            "type": f"/problems/{self.kind}",
            "title": self.title,
            "status": self.status,
        }
        if self.detail:
            body["detail"] = self.detail
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        response = Response(json.dumps(body), status=self.status, mimetype=PROBLEM_JSON)
        response.headers.update(self.headers)
        return response
