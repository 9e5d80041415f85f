"""The gateway's pooled keep-alive connections against an upstream that closes them as they are reused.

gunicorn closes a keep-alive connection after its idle timeout; when the gateway reuses the connection at
that moment the request dies unanswered. That race made a healthy loyalty service answer 502 in the purchases
reliability test. This upstream loses every connection's second request deterministically, so the race is
reproduced every time instead of once in a few hundred calls.
"""
from __future__ import annotations

import socketserver
import threading
import uuid

import pytest

from crm.registry import SUITE
from services.gateway import keys

pytestmark = pytest.mark.reliability


class _DropsReusedConnections(socketserver.ThreadingTCPServer):
    """Answers the first request of each connection (keeping it alive) and closes on the second, unanswered."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0
        self.answered: list[str] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(socketserver.StreamRequestHandler):
    def handle(self):
        server: _DropsReusedConnections = self.server
        with server.lock:
            server.connections += 1
        for number in (1, 2):
            request_line = self.rfile.readline()
            if not request_line:
                return
            length = 0
            while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            self.rfile.read(length)
            if number == 2:
                return  # the idle timer won: the connection closes with the request unanswered
            method = request_line.split()[0].decode()
            with server.lock:
                server.answered.append(method)
            body = b'{"items": [], "next_cursor": null}'
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            self.wfile.flush()


@pytest.fixture
def upstream():
    server = _DropsReusedConnections()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def call(service_app, upstream):
    """Call the gateway in front of `upstream` (every route goes there) with an API key holding every scope."""
    gateway = service_app(SUITE.gateway, CRM_UPSTREAM_TIMEOUT="5",
                          **{f"CRM_{e.env_prefix}_URL": upstream.url for e in SUITE.upstreams})
    with gateway.extensions["crm.runtime"].uow() as work:
        _key, plaintext = keys.create_key(work.session, name="keepalive", scopes=["admin"])
        work.commit()
    client = gateway.test_client()
    return lambda method, **kw: client.open("/api/v1/loyalty/members", method=method,
                                            headers={"Authorization": f"Bearer {plaintext}", **kw.pop("headers", {})},
                                            **kw)


def test_a_get_on_a_pooled_connection_the_upstream_just_closed_is_sent_again_not_a_502(call, upstream):
    first, second = call("GET"), call("GET")
    assert (first.status_code, second.status_code) == (200, 200), second.get_data(as_text=True)
    assert second.json == {"items": [], "next_cursor": None}
    assert upstream.connections == 2 and upstream.answered == ["GET", "GET"]


def test_a_post_with_an_idempotency_key_is_sent_again_and_one_without_is_not(call, upstream):
    assert call("GET").status_code == 200
    keyed = call("POST", json={}, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert keyed.status_code == 200, keyed.get_data(as_text=True)
    assert call("GET").status_code == 200  # the last connection is pooled again; a plain POST reuses it
    plain = call("POST", json={})
    # Sending it again could apply it twice; the caller (who may retry with an Idempotency-Key) decides.
    assert plain.status_code == 502 and plain.content_type.startswith("application/problem+json")
    assert upstream.answered == ["GET", "POST", "GET"]
