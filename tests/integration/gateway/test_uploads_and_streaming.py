"""The gateway lets uploads past 1 MiB through on the registry's upload routes only, and relays long answers as
they arrive (chunked), the read timeout applying between pieces; connections go back to the pool or are closed."""
from __future__ import annotations

import io
import json
import threading
import time

import pytest
import requests
import waitress
from werkzeug.wrappers import Request, Response

from services.gateway.proxy import BUFFERED_ANSWER_MAX, UpstreamBrokeOff

pytestmark = pytest.mark.integration

MiB = 1 << 20
UPLOADS = "/api/v1/contacts/imports"  # the upload route of the suite registry
PIECE = b"x" * 50_000 + b"\n"  # less than the relay's read size: one piece, one chunk


class StreamingUpstream:
    """A keep-alive HTTP/1.1 upstream on waitress (gunicorn keeps connections alive too; werkzeug's server does not).

    It records each request (`received`: headers lower-cased, the body's bytes) and the client port it came from
    (`ports`: one port, one connection), and answers a small JSON echo, or at `/api/v1/contacts/stream?pieces=&gap=
    &hold=&length=` an export-like body: `pieces` pieces `gap` seconds apart, sent chunked or, with `length=1`,
    with a Content-Length. `hold=1` sends the first piece, then waits until the test sets `released` (or 10 s
    pass), so a test can show the first piece reached it while the upstream was still answering.
    """

    def __init__(self):
        self.received: list[dict] = []
        self.ports: list[str] = []
        self.released = threading.Event()
        self.held_until_released: bool | None = None
        self._server = waitress.create_server(self._app, host="127.0.0.1", port=0, threads=4)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.effective_port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        _stop(self._server, self._thread)

    @Request.application
    def _app(self, request: Request) -> Response:
        self.ports.append(request.environ["REMOTE_PORT"])
        if request.path == "/api/v1/contacts/stream":
            return self._stream(request)
        body = request.get_data()
        self.received.append({"method": request.method, "path": request.path, "body": body,
                              "headers": {k.lower(): v for k, v in request.headers.items()}})
        return Response(json.dumps({"path": request.path, "bytes": len(body)}), mimetype="application/json")

    def _stream(self, request: Request) -> Response:
        pieces, gap = int(request.args.get("pieces", "3")), float(request.args.get("gap", "0"))

        def body():
            for number in range(pieces):
                if number:
                    time.sleep(gap)
                yield PIECE
                if number == 0 and request.args.get("hold"):
                    self.held_until_released = self.released.wait(10)

        headers = {"Content-Disposition": 'attachment; filename="contacts.csv"'}
        if request.args.get("length"):
            headers["Content-Length"] = str(pieces * len(PIECE))
        return Response(body(), mimetype="text/csv", headers=headers)


@pytest.fixture
def upstream():
    with StreamingUpstream() as server:
        yield server


@pytest.fixture
def served(gateway):
    """The gateway app on waitress, as `crm web gateway` serves it; its base URL."""
    server = waitress.create_server(gateway, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    _stop(server, thread)


def _stop(server, thread: threading.Thread) -> None:
    """Stop a waitress server for good: its running tasks end first, then every socket it holds is closed, by
    the server's own loop thread, which then ends.

    `server.close()` alone closed the listening socket and the wake-up pipe while a task was still answering (an
    upstream that sleeps between pieces); when the task ended it wrote to the pipe's old file descriptor, which
    by then belonged to the next test's PostgreSQL connection, and broke it ("invalid length of startup packet").
    Closing the sockets from the test's thread instead raced the loop thread's `select`, which then failed on a
    closed descriptor (EBADF, an unhandled thread exception). Run on the loop thread (the trigger's thunk), the
    closes happen between two selects, and the loop, its map empty, returns.
    """
    server.task_dispatcher.shutdown(timeout=30)

    def close_all() -> None:
        for dispatcher in list(server._map.values()):  # the listener, the wake-up pipe and any open connection
            dispatcher.close()

    server.trigger.pull_trigger(close_all)
    thread.join(timeout=30)
    assert not thread.is_alive(), "the waitress loop did not end after its sockets were closed"


def _pool(gateway):
    proxy = gateway.extensions["crm.gateway"].proxy
    return proxy._pool(proxy.upstreams["contacts"])[0]


def _idle(pool) -> bool:
    """Every connection of the pool is back in it."""
    return pool.pool.qsize() == pool.pool.maxsize


def _multipart(size: int) -> dict:
    return {"file": (io.BytesIO(b"x" * size), "people.csv", "text/csv"), "mapping": '{"E-mail": "email"}'}


# -- uploads ----------------------------------------------------------------------------------------------------

def test_an_upload_past_1_mib_passes_on_the_upload_route_and_is_refused_elsewhere(client, make_key, upstream):
    headers = {"X-API-Key": make_key("contacts:import", "contacts:write")}
    response = client.post(UPLOADS, data=_multipart(3 * MiB), content_type="multipart/form-data", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    seen = upstream.received[-1]
    assert int(seen["headers"]["content-length"]) == len(seen["body"]) > 3 * MiB
    assert seen["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    assert "transfer-encoding" not in seen["headers"]  # the length is known, so it is sent, not chunks
    received = len(upstream.received)
    for path in ("/api/v1/contacts", "/api/v1/contacts/imports/7", "/api/v1/leads"):
        refused = client.post(path, data=_multipart(3 * MiB), content_type="multipart/form-data", headers=headers)
        assert refused.status_code == 415 and refused.mimetype == "application/problem+json", path
    # JSON keeps the 1 MiB limit, on the upload route too.
    big_json = {"file": "A" * (MiB + 10), "mapping": {}}
    for path in (UPLOADS, "/api/v1/contacts"):
        refused = client.post(path, json=big_json, headers=headers)
        assert refused.status_code == 413 and refused.mimetype == "application/problem+json", path
    assert len(upstream.received) == received


def test_an_upload_past_the_upload_size_is_a_413_problem_at_the_gateway(client, make_key, upstream, gateway):
    limit = gateway.extensions["crm.settings"].max_upload_bytes
    headers = {"X-API-Key": make_key("contacts:import")}
    refused = client.post(UPLOADS, data=_multipart(limit), content_type="multipart/form-data", headers=headers)
    assert refused.status_code == 413 and refused.mimetype == "application/problem+json"
    assert refused.json["max_bytes"] == limit
    assert upstream.received == []


def test_an_upload_through_waitress_reaches_the_upstream_whole(served, make_key, upstream):
    key = make_key("contacts:import")
    data = bytes(range(256)) * (6 * MiB // 256)  # every byte value, 6 MiB
    response = requests.post(served + UPLOADS, headers={"X-API-Key": key}, timeout=30,
                             files={"file": ("people.csv", data, "text/csv"), "mapping": (None, "{}")})
    assert response.status_code == 200, response.text[:300]
    seen = upstream.received[-1]
    assert int(seen["headers"]["content-length"]) == len(seen["body"])
    assert data in seen["body"]  # byte for byte


# -- streamed answers ---------------------------------------------------------------------------------------------

def test_a_long_answer_reaches_the_caller_chunked_while_the_upstream_is_still_sending(served, make_key, upstream):
    key = make_key("contacts:export")
    with requests.get(served + "/api/v1/contacts/stream?pieces=3&hold=1", headers={"X-API-Key": key},
                      stream=True, timeout=5) as response:
        assert response.status_code == 200
        assert response.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in response.headers
        assert response.headers["Content-Disposition"] == 'attachment; filename="contacts.csv"'
        assert response.headers["Content-Type"].startswith("text/csv")
        first = response.raw.read(len(PIECE))
        assert first == PIECE  # arrived while the upstream waits for this very moment
        upstream.released.set()
        rest = response.raw.read()
    assert upstream.held_until_released is True
    assert first + rest == PIECE * 3


def test_a_short_answer_is_still_sent_whole_with_its_length(served, make_key, upstream):
    response = requests.get(served + "/api/v1/contacts/7", headers={"X-API-Key": make_key("contacts:read")}, timeout=5)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content) <= BUFFERED_ANSWER_MAX
    assert "Transfer-Encoding" not in response.headers


def test_the_read_timeout_applies_between_pieces_not_to_the_whole_answer(client, make_key, upstream, gateway):
    headers = {"X-API-Key": make_key("contacts:export")}
    started = time.monotonic()
    # Five pieces 0.5 s apart: 2 s in all, twice the gateway's 1 s timeout, and complete.
    response = client.get("/api/v1/contacts/stream?pieces=5&gap=0.5", headers=headers)
    assert response.status_code == 200 and response.data == PIECE * 5
    assert time.monotonic() - started > 1.8


def test_an_upstream_silent_past_the_timeout_midway_cuts_the_answer_and_its_connection(client, make_key, upstream,
                                                                                       gateway):
    headers = {"X-API-Key": make_key("contacts:export")}
    pool = _pool(gateway)
    response = client.get("/api/v1/contacts/stream?pieces=2&gap=2.5", headers=headers)
    assert response.status_code == 200
    pieces = iter(response.response)
    assert next(pieces) == PIECE
    with pytest.raises(UpstreamBrokeOff):
        next(pieces)  # a WSGI server cuts the caller's connection here: a truncated body, never a complete one
    response.close()
    assert _idle(pool)
    assert client.get("/api/v1/contacts/7", headers=headers).status_code == 200
    assert upstream.ports[-1] != upstream.ports[-2], "the broken connection was closed, not reused"


def test_a_connection_goes_back_to_the_pool_after_a_whole_answer_and_is_closed_after_a_caller_left(
        client, make_key, upstream, gateway):
    headers = {"X-API-Key": make_key("contacts:export")}
    pool = _pool(gateway)
    pieces = BUFFERED_ANSWER_MAX // len(PIECE) + 1  # a long answer, relayed, of a known length
    for _ in range(2):
        relayed = client.get(f"/api/v1/contacts/stream?pieces={pieces}&length=1", headers=headers)
        assert relayed.is_streamed and relayed.data == PIECE * pieces
        assert _idle(pool)
    assert upstream.ports[0] == upstream.ports[1]  # one connection served both

    left = client.get("/api/v1/contacts/stream?pieces=50&length=1", headers=headers)
    assert next(iter(left.response)).startswith(b"xxx")
    left.close()  # the caller went away after one piece
    assert _idle(pool)
    assert client.get("/api/v1/contacts/stream?pieces=2&length=1", headers=headers).data == PIECE * 2
    assert upstream.ports[3] != upstream.ports[2], "the half-read connection was closed, not reused"
