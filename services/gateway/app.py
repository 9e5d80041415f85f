"""Composition root of the gateway: API keys in, signed identity out, one public entry point."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, current_app, g, jsonify, request
from werkzeug.middleware.proxy_fix import ProxyFix

from services.common import swagger_ui
from services.common.problems import problem_response
from services.common.runtime import Runtime, build_runtime
from crm.registry import SUITE
from services.common.settings import MAX_JSON_BYTES, Settings, web_concurrency
from services.common.web import ANY_MEDIA_TYPE, OPEN_PATHS, create_service_app, upload_route

from . import api, keys
from .aggregate import merge_openapi, probe_all
from .proxy import GATEWAY_PRINCIPAL, UpstreamProxy
from .ratelimits import DEFAULT_KEY_PREFIX, AddressLimits, install_rate_limits, too_many
from .routes import PARTNER_PORTAL, RouteTable, under

log = logging.getLogger("crm.gateway")

PUBLIC_PATHS = (*OPEN_PATHS, "/api/openapi.json", "/api/docs")
PROXY_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
READINESS_TIMEOUT = 2.0
STREAMED_BODY_OVER = MAX_JSON_BYTES
OPENAPI_TIMEOUT = 5.0


@dataclass
class Gateway:
    """What the gateway's views share: the route table, the proxy, the key cache and the key store's runtime."""

    settings: Settings
    runtime: Runtime
    routes: RouteTable
    proxy: UpstreamProxy
    key_cache: keys.KeyCache
    address_limits: AddressLimits

    def serves(self, path: str, upstream: str) -> bool:
        """True when the route table sends `path` to `upstream`."""
        route = self.routes.match(path)
        return route is not None and route.upstream == upstream


def _gateway() -> Gateway:
    return current_app.extensions["crm.gateway"]


def _presented_key() -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("X-API-Key", "").strip() or None


def authenticate_request():
    """Turn the caller's API key into g.principal; partner keys reach only the partner portal.

    Per client address, before any key is looked up: the public documents that fan out to every upstream are
    limited, and an address that failed to authenticate too often is refused whatever it sends next.
    """
    address_limits = _gateway().address_limits
    if request.path in address_limits.PUBLIC_PATHS:
        seconds = address_limits.public_exceeded(request.path, request.remote_addr or "?")
        if seconds is not None:
            return too_many(f"Too many calls to {request.path} from this address; retry in {seconds} s.", seconds)
    if request.path in PUBLIC_PATHS or request.path.startswith(swagger_ui.ASSETS_PATH):
        return None
    address = request.remote_addr or "?"
    seconds = address_limits.failures_exceeded(address)
    if seconds is not None:
        return too_many(f"Too many calls without a valid API key from this address; retry in {seconds} s.", seconds)
    presented = _presented_key()
    if presented is None:
        address_limits.record_failure(address)
        return problem_response(401, "Unauthorized",
                                "Send an API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
                                headers={"WWW-Authenticate": 'Bearer realm="crm"'})
    principal = _gateway().key_cache.authenticate(presented)
    if principal is None:
        address_limits.record_failure(address)
        return problem_response(401, "Unauthorized", "The API key is unknown or revoked.",
                                headers={"WWW-Authenticate": 'Bearer realm="crm", error="invalid_token"'})
    g.principal = principal
    if principal.kind == "partner" and not under(request.path, PARTNER_PORTAL):
        return problem_response(403, "Forbidden", f"A partner key may call only {PARTNER_PORTAL}/...")
    return None


def _takes_upload() -> bool:
    return _gateway().routes.takes_upload(request.path)


# The route table's upload routes take bodies up to CRM_MAX_UPLOAD_BYTES in any media type: the upstream's view
# says which it takes (415); every other path keeps the kit's JSON-only 1 MiB.
@upload_route(ANY_MEDIA_TYPE, applies=_takes_upload)
def forward_request(rest: str):
    """Send a routed /api/v1/... call to its upstream with the caller's signed identity."""
    gateway = _gateway()
    path = request.path
    if any(segment in (".", "..") for segment in path.split("/")):
        return problem_response(400, "Bad Request", "Dot segments are not allowed in the path.")
    route = gateway.routes.match(path)
    if route is None:
        return problem_response(404, "Not Found", f"No service serves {path}.")
    length = request.content_length
    # A body up to the JSON limit is read and sent as bytes (resent as is if a pooled connection died unused);
    # a larger one (an upload route's) is passed on as it is read, never held whole in memory.
    streamed = (length or 0) > STREAMED_BODY_OVER or (length is None and "Transfer-Encoding" in request.headers)
    return gateway.proxy.forward(route.upstream, method=request.method, path=path,
                                 query_string=request.query_string, headers=request.headers,
                                 body=request.stream if streamed else request.get_data(cache=False),
                                 body_length=length, principal=g.principal, request_id=g.request_id)


def aggregated_readiness():
    """The gateway's database and every upstream's /readyz, probed in parallel."""
    gateway = _gateway()
    timeout = min(READINESS_TIMEOUT, gateway.settings.upstream_timeout)
    checks = {"database": gateway.runtime.check_database}
    for upstream in gateway.routes.upstreams:
        checks[upstream] = (lambda name=upstream: gateway.proxy.get_json(name, "/readyz", timeout=timeout))
    results = probe_all(checks, timeout + 0.5)
    report, down = {}, []
    for name, failure in results.items():
        optional = name in gateway.routes.optional
        if failure is None:
            report[name] = "ok"
        else:
            report[name] = f"unavailable: {failure}" + (" (optional)" if optional else "")
            if not optional:
                down.append(name)
    if not down:
        return jsonify(status="ready", service="gateway", checks=report)
    return problem_response(503, "Service Unavailable", f"Not ready: {', '.join(down)} unavailable.",
                            checks=report, unavailable=down)


def aggregated_openapi(own_spec):
    """Build the view serving one OpenAPI document: the gateway's own paths and every reachable upstream's."""

    def view():
        gateway = _gateway()
        timeout = min(OPENAPI_TIMEOUT, gateway.settings.upstream_timeout)
        specs: dict[str, dict] = {}

        def fetch(name):
            return lambda: specs.__setitem__(name, gateway.proxy.get_json(
                name, "/api/openapi.json", timeout=timeout, principal=GATEWAY_PRINCIPAL))

        results = probe_all({name: fetch(name) for name in gateway.routes.upstreams}, timeout + 0.5)
        ordered = {name: specs[name] for name in gateway.routes.upstreams if results.get(name) is None and name in specs}
        merged = merge_openapi(own_spec(), ordered, gateway.serves)
        missing = sorted(name for name in gateway.routes.upstreams if name not in ordered)
        if missing:
            merged["x-unavailable-upstreams"] = missing
        return jsonify(merged)

    return view


def create_app(settings: Settings | None = None, *, proxy: UpstreamProxy | None = None,
               rate_limit_prefix: str = DEFAULT_KEY_PREFIX) -> Flask:
    """The gateway web application (`proxy` lets tests tune the circuit breaker, `rate_limit_prefix` keeps
    tests sharing one Redis apart)."""
    settings = settings or SUITE.settings("gateway")
    # The default table derives from the suite registry; CRM_GATEWAY_ROUTES replaces it with a file.
    routes = (RouteTable.load(settings.gateway_routes) if settings.gateway_routes
              else RouteTable.from_mapping(SUITE.route_map(), uploads=SUITE.upload_routes(),
                                           source="the suite registry"))
    runtime = build_runtime(settings, None, None)
    _processes, threads = web_concurrency()
    gateway = Gateway(settings=settings, runtime=runtime, routes=routes,
                      proxy=proxy or UpstreamProxy.from_settings(settings, pool_size=threads),
                      key_cache=keys.KeyCache(keys.SqlKeySource(runtime.engine), ttl=settings.key_cache_seconds),
                      address_limits=AddressLimits(settings, key_prefix=rate_limit_prefix))
    app = create_service_app("gateway", title="CRM Suite API", blueprints=[api.blp], settings=settings,
                             readiness={"database": runtime.check_database}, verify_identity=False,
                             extensions={"crm.runtime": runtime, "crm.gateway": gateway})
    # Registered after the kit's own hook, so g.request_id is already set.
    app.before_request(authenticate_request)
    # After authentication, so the limit is counted per key (g.principal).
    install_rate_limits(app, settings, key_prefix=rate_limit_prefix)
    app.add_url_rule("/api/v1/<path:rest>", "proxy", forward_request, methods=PROXY_METHODS)
    if settings.proxy_hops:
        # Behind N trusted proxies (an ingress, a load balancer) the client is the Nth address from the right of
        # X-Forwarded-For; without this every client would share the proxy's address and its limits.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops)
    # The kit's /readyz probes one check after another and names no culprit; the gateway's probes in parallel.
    app.view_functions["readyz"] = aggregated_readiness
    spec_endpoint = "api-docs.openapi_json"
    api_object = app.view_functions[spec_endpoint].__self__
    app.view_functions[spec_endpoint] = aggregated_openapi(lambda: api_object.spec.to_dict())
    return app
