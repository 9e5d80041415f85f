"""The Flask application kit: OpenAPI, problem+json, request ids, identity, health, metrics, JSON logs."""
from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextlib import contextmanager
from typing import Callable, Iterable

from flask import Flask, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from .broker import ping
from .identity import HEADER as IDENTITY_HEADER
from .identity import InvalidIdentity, TokenVerifier
from .logs import configure_logging
from . import swagger_ui
from .openapi import SuiteApi
from .problems import problem_response, register_problem_handlers
from .uow import UnitOfWork

log = logging.getLogger("crm.http")

OPEN_PATHS = ("/healthz", "/readyz", "/metrics")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}
# Every PUT and PATCH of the suite replaces or changes a record with what its JSON body says: without a body
# there is nothing to apply (the parser would read it as `{}` and answer 200 for a change never described).
_BODY_REQUIRED = {"PUT", "PATCH"}


def request_id_from(header_value: str | None) -> str:
    """Keep a caller's well-formed X-Request-ID, otherwise mint one."""
    if header_value and _REQUEST_ID.match(header_value):
        return header_value
    return uuid.uuid4().hex


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


# No body of this API nests more than a few levels; a deeper one is refused before anything parses it for real.
MAX_JSON_DEPTH = 32
_NUL = "Text may not contain the NUL character (U+0000)."


def _json_trouble(value) -> tuple[str, str | None] | None:
    """("depth", None) when `value` nests deeper than MAX_JSON_DEPTH; ("nul", top-level field) for a NUL in a string."""
    stack = [(value, 1, None)]
    while stack:
        node, depth, field = stack.pop()
        if isinstance(node, (dict, list)) and depth > MAX_JSON_DEPTH:
            return "depth", None
        if isinstance(node, dict):
            for key, item in node.items():
                name = key if field is None else field
                if "\x00" in key:
                    return "nul", name
                stack.append((item, depth + 1, name))
        elif isinstance(node, list):
            stack.extend((item, depth + 1, field) for item in node)
        elif isinstance(node, str) and "\x00" in node:
            return "nul", field
    return None


def hostile_input_problem():
    """A 400/422 problem for input that would otherwise fail deep in a request as a 500, else None.

    JSON nested thousands deep raises RecursionError in whichever parser meets it first (json, the idempotency
    fingerprint, marshmallow); a NUL character is refused by PostgreSQL text columns. Both are checked once,
    here, for the bodies and query strings of this app's API views (its blueprints): a route outside them,
    such as the gateway's proxy, only passes bytes on, and its upstream checks them, after authentication.
    A body is only parsed here when it could hold either: more brackets than the depth limit, or an escaped
    NUL; malformed JSON is left to the view's parser (400).
    """
    if request.blueprint is None:
        return None
    for name, value in request.args.items(multi=True):
        if "\x00" in name or "\x00" in value:
            return problem_response(422, "Unprocessable content", f"The query has invalid fields: {name}.",
                                    errors={name: [_NUL]})
    if request.method not in _BODY_METHODS or not _is_json(request.mimetype):
        return None
    body = request.get_data(cache=True)
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH and b"\\u0000" not in body:
        return None
    try:
        trouble = _json_trouble(json.loads(body))
    except RecursionError:
        trouble = ("depth", None)
    except ValueError:  # not JSON (UnicodeDecodeError included): the view's parser says so after the scope check
        return None
    if trouble is None:
        return None
    kind, field = trouble
    if kind == "depth":
        return problem_response(400, "Bad Request", f"The JSON body nests more than {MAX_JSON_DEPTH} levels deep.")
    field = field if field is not None else "_schema"
    return problem_response(422, "Unprocessable content", f"The request has invalid fields: {field}.",
                            errors={field: [_NUL]})


class _Metrics:
    def __init__(self, service: str):
        self.registry = CollectorRegistry()
        self.requests = Counter("crm_http_requests_total", "HTTP requests handled.",
                                ["service", "method", "route", "status"], registry=self.registry)
        self.duration = Histogram("crm_http_request_duration_seconds", "HTTP request duration.",
                                  ["service", "method", "route"], registry=self.registry)


def create_service_app(
    name: str,
    *,
    title: str,
    blueprints: Iterable,
    settings,
    readiness: dict[str, Callable[[], None]],
    verify_identity: bool = True,
    extensions: dict | None = None,
) -> Flask:
    """Build a Flask app with the whole kit around the given flask-smorest blueprints."""
    configure_logging(name, settings.log_level)
    app = Flask(f"crm.{name}")
    app.config.update(
        API_TITLE=title, API_VERSION="v1", OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api", OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs", **swagger_ui.CONFIG,  # the UI's files are served by the app itself
        MAX_CONTENT_LENGTH=1 << 20, JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False
    # SuiteApi: errors documented as problem+json, decimals as decimal strings (openapi.py).
    api = SuiteApi(app, spec_kwargs={"components": {"securitySchemes": {
        "apiKey": {"type": "http", "scheme": "bearer", "description": "An API key created with `crm keys create`."}}},
        "security": [{"apiKey": []}]})
    for bp in blueprints:
        api.register_blueprint(bp)
    # After Api.init_app, so these replace flask-smorest's own JSON error handler.
    register_problem_handlers(app)
    app.extensions.update(extensions or {})
    app.extensions["crm.settings"] = settings
    metrics = _Metrics(name)
    verifier = TokenVerifier(settings.identity_public_key, service=name) if verify_identity else None

    @app.before_request
    def _begin():
        g.started = time.perf_counter()
        g.request_id = request_id_from(request.headers.get("X-Request-ID"))
        g.principal = None
        if request.path in OPEN_PATHS:
            return None
        if verify_identity:
            token = request.headers.get(IDENTITY_HEADER)
            if not token:
                return problem_response(401, "Unauthorized", "Call this service through the gateway with an API key.")
            try:
                g.principal = verifier.verify(token)
            except InvalidIdentity:
                return problem_response(401, "Unauthorized", "The identity token is invalid or expired.")
        if (verify_identity and request.routing_exception is None and request.method in _BODY_REQUIRED
                and not (request.content_length or request.headers.get("Transfer-Encoding"))):
            # In the service that owns the route (the gateway relays its answer), and only for a route that takes
            # the method: an unknown path or method stays a 404 or 405.
            return problem_response(400, "Bad Request", f"A {request.method} needs a JSON body (application/json).")
        if request.method in _BODY_METHODS and (request.content_length or request.headers.get("Transfer-Encoding")):
            if not _is_json(request.mimetype):
                return problem_response(415, "Unsupported Media Type",
                                        f"Send the body as application/json, not {request.mimetype or 'no type'}.")
        return hostile_input_problem()

    @app.after_request
    def _finish(response: Response):
        rid = getattr(g, "request_id", None) or uuid.uuid4().hex
        response.headers["X-Request-ID"] = rid
        elapsed = time.perf_counter() - getattr(g, "started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule else "<unmatched>"
        metrics.requests.labels(name, request.method, route, str(response.status_code)).inc()
        metrics.duration.labels(name, request.method, route).observe(elapsed)
        if request.path not in OPEN_PATHS:
            principal = getattr(g, "principal", None)
            log.info("%s %s %s", request.method, request.path, response.status_code, extra={
                "event": "http.request", "request_id": rid, "correlation_id": rid,
                "method": request.method, "path": request.path, "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 2),
                "principal": principal.key_id if principal else None,
            })
        return response

    swagger_ui.install(app)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", service=name)

    @app.get("/readyz")
    def readyz():
        checks, ok = {}, True
        for check_name, check in readiness.items():
            try:
                check()
                checks[check_name] = "ok"
            except Exception as exc:  # noqa: BLE001 — a failing dependency makes us not ready
                ok = False
                checks[check_name] = f"unavailable: {type(exc).__name__}"
        if ok:
            return jsonify(status="ready", service=name, checks=checks)
        return problem_response(503, "Service Unavailable", "A dependency is unavailable.", checks=checks)

    @app.get("/metrics")
    def metrics_view():
        return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)

    return app


def runtime_readiness(runtime) -> dict[str, Callable[[], None]]:
    """The database and broker checks of a service's /readyz."""
    return {"database": runtime.check_database, "broker": lambda: ping(runtime.settings.amqp_url)}


# Where `@idempotent` keeps the request's outer unit of work while its view runs.
_REQUEST_UOW = "crm_request_uow"


def uow() -> UnitOfWork:
    """The request's unit of work: the idempotent outer one under an Idempotency-Key, else a fresh one.

    The only accessor views use. Under `@idempotent` a fresh unit of work would commit apart from the stored
    response (a replay could then answer for a change that never committed, or the reverse), so every use
    case in that view joins the outer transaction instead. Events are correlated by the request id.
    """
    outer = g.get(_REQUEST_UOW)
    if outer is not None:
        return outer
    return runtime().uow(correlation_id=g.request_id)


@contextmanager
def request_unit_of_work(outer: UnitOfWork):
    """Make `outer` what `uow()` returns until the block ends (used by `@idempotent`)."""
    setattr(g, _REQUEST_UOW, outer)
    try:
        yield outer
    finally:
        g.pop(_REQUEST_UOW, None)


def read_uow() -> UnitOfWork:
    """A read-only unit of work for a GET view: no write lock on SQLite, a READ ONLY transaction on PostgreSQL."""
    return runtime().uow(read_only=True)


def runtime():
    """The current service's runtime."""
    return current_app.extensions["crm.runtime"]
