"""A real HTTP upstream in a thread: echoes what it received, can be slow, unready, or serve a spec."""
from __future__ import annotations

import json
import threading
import time
from typing import Self

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "echo", "version": "v1"},
    "paths": {"/api/v1/leads": {"get": {"responses": {"200": {"content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/EchoLead"}}}}}}}},
    "components": {"schemas": {"EchoLead": {"type": "object"}}},
    "tags": [{"name": "echo"}],
}


class EchoUpstream:
    """Started on a free loopback port; `.url` is its base URL, `.received` every request it saw (headers lower-cased)."""

    def __init__(self):
        self.ready = True
        self.missing: set[str] = set()  # paths answered 404 (a partner that does not exist)
        self.readyz_delay = 0.0
        self.received: list[dict] = []
        self.readyz_in_flight = 0
        self.readyz_max_in_flight = 0
        self._lock = threading.Lock()
        # Port 0: the kernel picks a free port at bind time, so no other process can take it in between.
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @Request.application
    def _app(self, request: Request) -> Response:
        seen = {"method": request.method, "path": request.path, "query": request.query_string.decode(),
                "headers": {k.lower(): v for k, v in request.headers.items()}, "body": request.get_data(as_text=True)}
        self.received.append(seen)
        if request.path == "/readyz":
            with self._lock:
                self.readyz_in_flight += 1
                self.readyz_max_in_flight = max(self.readyz_max_in_flight, self.readyz_in_flight)
            time.sleep(self.readyz_delay)
            with self._lock:
                self.readyz_in_flight -= 1
            return Response(json.dumps({"status": "ready" if self.ready else "down"}),
                            status=200 if self.ready else 503, mimetype="application/json")
        if request.path == "/api/openapi.json":
            return Response(json.dumps(SPEC), mimetype="application/json")
        if request.path in self.missing:
            return Response(json.dumps({"status": 404, "title": "Not found"}), status=404,
                            mimetype="application/problem+json")
        if "/slow" in request.path:
            time.sleep(float(request.args.get("seconds", "3")))
        response = Response(json.dumps(seen), status=int(request.args.get("status", "200")),
                            mimetype="application/json")
        response.headers["ETag"] = '"v7"'
        response.headers["Location"] = f"{self.url}/api/v1/leads/42"
        response.headers["Set-Cookie"] = "session=upstream-secret"
        response.headers["X-Internal-Debug"] = "do-not-leak"
        return response
