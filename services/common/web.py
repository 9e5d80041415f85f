"""The Flask application kit: OpenAPI, problem+json, request ids, identity, health, metrics, JSON logs, uploads."""
from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Callable, Iterable

from flask import Flask, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import CombinedMultiDict

from .broker import ping
from .identity import HEADER as IDENTITY_HEADER
from .identity import InvalidIdentity, TokenVerifier
from .logs import configure_logging
from . import swagger_ui
from .openapi import SuiteApi
from .problems import problem_response, register_problem_handlers
from .settings import MAX_JSON_BYTES
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


# -- upload routes ---------------------------------------------------------------------------------------------

MULTIPART = "multipart/form-data"
ANY_MEDIA_TYPE = "*/*"
_UPLOAD = "_crm_upload"  # the attribute that marks a view (outer decorators carry it up: functools.wraps)


@dataclass(frozen=True)
class UploadRoute:
    """What a view takes besides the JSON of every route: bodies of `media_types` up to `max_bytes`.

    `max_bytes` None is the process's CRM_MAX_UPLOAD_BYTES. `applies`, when given, says per request whether the
    view takes an upload there (the gateway's one proxy view does only on its route table's upload routes).
    """

    media_types: tuple[str, ...]
    max_bytes: int | None = None
    applies: Callable[[], bool] | None = None

    def takes(self, mimetype: str) -> bool:
        return ANY_MEDIA_TYPE in self.media_types or mimetype in self.media_types


def upload_route(*media_types: str, max_bytes: int | None = None, applies: Callable[[], bool] | None = None):
    """Mark a view as an upload route: it also takes bodies of `media_types` (ANY_MEDIA_TYPE: any), up to
    `max_bytes` (default CRM_MAX_UPLOAD_BYTES). A JSON body keeps the 1 MiB limit of every route."""
    route = UploadRoute(tuple(media_types), max_bytes, applies)

    def mark(view):
        setattr(view, _UPLOAD, route)
        return view

    return mark


def declared_upload_route(view, method: str) -> UploadRoute | None:
    """The upload route a view function (or a MethodView's `method`) declares, else None."""
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        view = getattr(view_class, method.lower(), None)
    return getattr(view, _UPLOAD, None)


def _upload_problem(settings):
    """None when the request's view takes its (non-JSON) body as an upload, raising the size limit to the
    route's; else the 415 naming what the route takes, or a 413 when the declared length is over the limit."""
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    route = declared_upload_route(view, request.method)
    if route is not None and route.applies is not None and not route.applies():
        route = None
    if route is None or not route.takes(request.mimetype):
        takes = "".join(f" or {media_type}" for media_type in route.media_types) if route else ""
        return problem_response(415, "Unsupported Media Type",
                                f"Send the body as application/json{takes}, not {request.mimetype or 'no type'}.")
    limit = route.max_bytes or settings.max_upload_bytes
    if (request.content_length or 0) > limit:
        return problem_response(413, "Request Entity Too Large",
                                f"The body is larger than the {limit:,} bytes this route takes.", max_bytes=limit)
    request.max_content_length = limit  # werkzeug holds a body without Content-Length (chunked) to it as it reads
    return None


class _PartsParser(FlaskParser):
    """webargs' Flask parser whose `files` location is a multipart body's parts: its files and its fields."""

    def load_files(self, req, schema):
        return self._makeproxy(CombinedMultiDict([req.files, req.form]), schema)


_PARTS_PARSER = _PartsParser()


def upload_arguments(blp, schema, *, json_schema=None, max_bytes: int | None = None):
    """flask-smorest arguments of an upload route: a multipart/form-data body's parts (files and fields) loaded
    with `schema`, a JSON body with `json_schema` when given; the view gets the result like `@blp.arguments`.

    Marks the view as an upload route for multipart/form-data (`upload_route`) and documents both bodies and
    the 413/415/422 answers. Put it where `@blp.arguments` would go. Werkzeug spools a file part over 500 KB to a
    temporary file, so a large upload is not held in memory by the parsing.
    """

    def decorate(view):
        @wraps(view)
        def parse_then_call(*args, **kwargs):
            if json_schema is not None and _is_json(request.mimetype):
                data = _PARTS_PARSER.parse(json_schema, location="json")
            else:
                data = _PARTS_PARSER.parse(schema, location="files", unknown=None)  # the schema's own `unknown`
            return view(*args, data, **kwargs)

        content = {MULTIPART: {"schema": schema}}
        if json_schema is not None:
            content["application/json"] = {"schema": json_schema}
        documented = blp.doc(requestBody={"required": True, "content": content})(parse_then_call)
        for status, description in (
                (413, ("The body is larger than the route takes: CRM_MAX_UPLOAD_BYTES (default 32 MiB) as "
                       "multipart/form-data, 1 MiB as JSON.")),
                (415, "The body is neither multipart/form-data nor JSON."),
                (422, "A part is missing or invalid; `errors` names it.")):
            documented = blp.alt_response(status, description=description)(documented)
        return upload_route(MULTIPART, max_bytes=max_bytes)(documented)

    return decorate


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
        MAX_CONTENT_LENGTH=MAX_JSON_BYTES, JSON_SORT_KEYS=False,
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
        if (request.method in _BODY_METHODS and not _is_json(request.mimetype)
                and (request.content_length or request.headers.get("Transfer-Encoding"))):
            # Every route takes JSON up to 1 MiB; an upload route (upload_route) also its own media types and size.
            refused = _upload_problem(settings)
            if refused is not None:
                return refused
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
