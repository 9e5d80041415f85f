"""A worker's ops port: /healthz, /readyz and /metrics, served by a small threaded WSGI server of its own.

The server runs on its own threads and only reads flags and counters, so it never sits in the event path;
the gauges that need a query (outbox backlog, queue depths) are read when /metrics is scraped.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from .problems import MEDIA_TYPE, PROBLEM_TYPE_BASE

log = logging.getLogger("crm.worker.http")

# A readiness check returns None when ready and raises (or returns a reason) when not.
Check = Callable[[], str | None]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a hung scrape must not keep the process alive at shutdown
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass  # probes every few seconds would flood the log


def _server_class(host: str) -> type[_Server]:
    if ":" not in host:
        return _Server
    return type("_Server6", (_Server,), {"address_family": socket.AF_INET6})


def _json(start_response, status: str, body: dict, content_type: str = "application/json") -> list[bytes]:
    payload = json.dumps(body).encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(payload))),
                            ("Cache-Control", "no-store")])
    return [payload]


def _problem(start_response, status: int, title: str, detail: str, path: str, **extra) -> list[bytes]:
    slug = {404: "not-found", 405: "method-not-allowed", 503: "service-unavailable"}[status]
    body = {"type": PROBLEM_TYPE_BASE + slug, "title": title, "status": status, "detail": detail,
            "instance": path, **extra}
    return _json(start_response, f"{status} {title}", body, MEDIA_TYPE)


class OpsServer:
    """Serves a worker's health, readiness and metrics on `host:port` (port 0: any free port) until stopped."""

    def __init__(self, service: str, *, liveness: Callable[[], Mapping[str, bool]], readiness: Mapping[str, Check],
                 registry: CollectorRegistry, host: str = "0.0.0.0", port: int = 9090):
        self.service = service
        self.liveness = liveness
        self.readiness = readiness
        self.host = host
        self.port = port
        self._metrics_app = make_wsgi_app(registry)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind and serve on a daemon thread; returns the bound port. Raises OSError when the port is taken."""
        self._server = make_server(self.host, self.port, self.app, server_class=_server_class(self.host),
                                   handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name=f"{self.service}-ops-http", daemon=True)
        self._thread.start()
        log.info("ops endpoints on %s:%d", self.host, self.port, extra={"event": "worker.ops_listening"})
        return self.port

    def stop(self) -> None:
        """Stop serving and free the port."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    # -- the WSGI application ----------------------------------------------------------------------------
    def app(self, environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        if path not in ("/healthz", "/readyz", "/metrics"):
            return _problem(start_response, 404, "Not Found", "This port serves /healthz, /readyz and /metrics.", path)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            def with_allow(status, headers):
                return start_response(status, [*headers, ("Allow", "GET, HEAD")])

            return _problem(with_allow, 405, "Method Not Allowed", f"{path} answers GET only.", path)
        if path == "/metrics":
            return self._metrics_app(environ, start_response)
        if path == "/healthz":
            return self._healthz(start_response, path)
        return self._readyz(start_response, path)

    def _healthz(self, start_response, path: str):
        threads = dict(self.liveness())
        dead = sorted(name for name, alive in threads.items() if not alive)
        if dead:
            return _problem(start_response, 503, "Service Unavailable", f"Worker thread(s) not running: {', '.join(dead)}.",
                            path, service=self.service, threads={k: "alive" if v else "dead" for k, v in threads.items()})
        return _json(start_response, "200 OK", {"status": "ok", "service": self.service,
                                                "threads": {name: "alive" for name in threads}})

    def _readyz(self, start_response, path: str):
        checks, failing = {}, []
        for name, check in self.readiness.items():
            try:
                reason = check()
            except Exception as exc:  # noqa: BLE001 — a failing dependency makes the worker not ready
                reason = type(exc).__name__
            checks[name] = "ok" if reason is None else f"unavailable: {reason}"
            if reason is not None:
                failing.append(name)
        if failing:
            return _problem(start_response, 503, "Service Unavailable", f"Not ready: {', '.join(failing)}.", path,
                            service=self.service, checks=checks)
        return _json(start_response, "200 OK", {"status": "ready", "service": self.service, "checks": checks})
