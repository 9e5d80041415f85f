"""RFC 9457 problem details for every error a CRM process returns."""
from __future__ import annotations

import logging
import re

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError

from .db import is_database_unavailable

log = logging.getLogger("crm.errors")

PROBLEM_TYPE_BASE = "https://crm-suite.dev/problems/"
MEDIA_TYPE = "application/problem+json"
# Seconds a caller is asked to wait when the database is unavailable (a restart takes a few).
DATABASE_RETRY_AFTER = 2


class Problem(Exception):
    """A domain error raised by a use case and rendered as problem+json."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, *, status: int | None = None, slug: str | None = None,
                 title: str | None = None, **extra):
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if slug is not None:
            self.slug = slug
        if title is not None:
            self.title = title
        self.extra = extra
        self.read_scope: str | None = None
        self.writer_detail: str | None = None

    def for_readers(self, read_scope: str, *, otherwise: str) -> Problem:
        """Show `detail` and the extra members only to a caller holding `read_scope`; anyone else gets `otherwise`.

        For a refusal that names another record or a figure (a duplicate's id, a balance): a key that may
        write but not read must not learn them by trying to write (issue 7 §2).
        """
        self.read_scope, self.writer_detail = read_scope, otherwise
        return self


class NotFound(Problem):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(Problem):
    status, slug, title = 409, "conflict", "Conflict"


class PreconditionFailed(Problem):
    status, slug, title = 412, "precondition-failed", "Precondition failed"


class Unprocessable(Problem):
    status, slug, title = 422, "validation-error", "Unprocessable content"


class Moved(Problem):
    """A record that lives on under another id (a merged contact): a read is sent there, a write refused.

    GET and HEAD answer 301 with Location, the request's URL with `old_id` replaced by `new_id`; any other method
    (or a URL that does not name `old_id`) answers 410. The extra members (e.g. `survivor_id`) go out with both.
    """

    status, slug, title = 410, "moved", "Moved"

    def __init__(self, detail: str, *, old_id, new_id, **extra):
        super().__init__(detail, **extra)
        self.old_id, self.new_id = str(old_id), str(new_id)

    def location(self) -> str | None:
        """Where a read of this request's URL goes now; None when it is not one, or the URL does not name old_id."""
        if request.method not in ("GET", "HEAD"):
            return None
        url = request.full_path if request.query_string else request.path
        # Case-insensitively: the path converter accepts an upper-case UUID as well.
        moved, found = re.subn(re.escape(self.old_id), self.new_id, url, flags=re.IGNORECASE)
        return moved if found else None


_SLUGS = {301: "moved", 400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
          405: "method-not-allowed", 409: "conflict", 410: "gone", 412: "precondition-failed", 413: "payload-too-large",
          414: "uri-too-long", 415: "unsupported-media-type",
          422: "validation-error", 428: "precondition-required", 429: "too-many-requests",
          431: "request-header-fields-too-large",
          500: "internal-error", 502: "bad-gateway", 503: "service-unavailable", 504: "gateway-timeout"}


def problem_response(status: int, title: str, detail: str | None = None, *, slug: str | None = None,
                     headers: dict | None = None, **extra):
    """Build a problem+json response."""
    body = {"type": PROBLEM_TYPE_BASE + (slug or _SLUGS.get(status, "error")), "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["instance"] = request.path if request else None
    rid = getattr(g, "request_id", None)
    if rid:
        body["request_id"] = rid
    body.update(extra)
    resp = jsonify(body)
    resp.status_code = status
    resp.mimetype = MEDIA_TYPE
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _field_errors(messages) -> dict:
    """Flatten webargs' {location: {field: [msgs]}} into {field: [msgs]}."""
    if isinstance(messages, dict) and set(messages) <= {"json", "query", "headers", "files", "form", "path", "view_args"}:
        merged: dict = {}
        for part in messages.values():
            if isinstance(part, dict):
                merged.update(part)
        return merged
    return messages if isinstance(messages, dict) else {"_schema": messages}


def register_problem_handlers(app: Flask) -> None:
    """Render every HTTP error, domain Problem and unexpected exception as problem+json."""

    @app.errorhandler(Problem)
    def _problem(exc: Problem):
        principal = g.get("principal")
        if exc.read_scope and not (principal is not None and principal.has_scope(exc.read_scope)):
            return problem_response(exc.status, exc.title, exc.writer_detail, slug=exc.slug)
        location = exc.location() if isinstance(exc, Moved) else None
        if location:
            return problem_response(301, exc.title, exc.detail, slug=exc.slug, headers={"Location": location},
                                    **exc.extra)
        return problem_response(exc.status, exc.title, exc.detail, slug=exc.slug, **exc.extra)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if isinstance(exc, InternalServerError):
            return _unexpected(exc.original_exception or exc)
        status = exc.code or 500
        extra = {}
        data = getattr(exc, "data", None) or {}
        if status == 422 and "messages" in data:
            extra["errors"] = _field_errors(data["messages"])
            detail = "The request has invalid fields: " + ", ".join(sorted(extra["errors"])) + "."
        else:
            detail = exc.description
        headers = {}
        valid_methods = getattr(exc, "valid_methods", None)
        if status == 405 and valid_methods:
            headers["Allow"] = ", ".join(valid_methods)
        if status == 429 and getattr(exc, "retry_after", None):
            headers["Retry-After"] = str(exc.retry_after)
        return problem_response(status, exc.name, detail, headers=headers, **extra)

    @app.errorhandler(Exception)
    def _unexpected(exc):
        if is_database_unavailable(exc):
            # Down, restarting or out of connections: the request may succeed in a moment, so say when to retry.
            # The pool has already dropped a connection that died (see db.POOL_RECYCLE_SECONDS).
            log.warning("database unavailable: %s", type(exc).__name__, extra={"event": "request.database_unavailable"})
            return problem_response(503, "Service Unavailable", "The database is unavailable; retry shortly.",
                                    headers={"Retry-After": str(DATABASE_RETRY_AFTER)})
        log.error("unhandled error", exc_info=exc, extra={"event": "request.error"})
        return problem_response(500, "Internal server error",
                                "The server failed to handle the request; quote the request id when you report it.")
