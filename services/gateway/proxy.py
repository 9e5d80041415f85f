"""Forwarding to upstream services: pooled HTTP, identity token, timeouts, a circuit breaker, streamed bodies."""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import BinaryIO
from urllib.parse import quote

import urllib3
import werkzeug.exceptions
from flask import Response
from urllib3.exceptions import HTTPError, NewConnectionError, ProtocolError, TimeoutError

from services.common.identity import HEADER as IDENTITY_HEADER
from services.common.identity import MAX_TOKEN_TTL, Principal, TokenSigner
from services.common.problems import Problem, problem_response

log = logging.getLogger("crm.gateway")

# Only these caller headers reach an upstream. Authorization, X-API-Key and any X-CRM-Identity the caller
# sent are dropped here by construction: the gateway signs its own identity header.
FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept", "If-Match", "If-None-Match", "Idempotency-Key")
# Forwarded even when empty: an empty Idempotency-Key is a key the caller sent, and the upstream refuses it (422)
# rather than running the request without one. Other empty headers say nothing and are dropped.
FORWARDED_WHEN_EMPTY = ("Idempotency-Key",)
# Only these upstream headers reach the caller (never hop-by-hop ones, cookies or Content-Length/Encoding,
# which the gateway recomputes for the body it sends).
FORWARDED_RESPONSE_HEADERS = ("Content-Type", "Content-Disposition", "ETag", "Location", "Retry-After", "Link",
                              "Allow")
# An answer whose Content-Length is at most this is read whole and sent with its length (every JSON answer of the
# API); a longer one, or one without a length (an export, sent chunked), is relayed piece by piece as it arrives.
BUFFERED_ANSWER_MAX = 256 * 1024
RELAY_PIECE = 64 * 1024
# The gateway's own principal when it fetches an upstream's OpenAPI document.
GATEWAY_PRINCIPAL = Principal(key_id="gateway", kind="internal", name="gateway")
# The gateway itself asking the partners service whether a partner exists (before binding a key to it).
PARTNER_LOOKUP_PRINCIPAL = Principal(key_id="gateway", kind="internal", scopes=frozenset({"partners:read"}),
                                     name="gateway")
PARTNER_LOOKUP_TIMEOUT = 5.0


class PartnersUnavailable(Problem):
    """The partners service could not say whether a partner exists (503)."""

    status, slug, title = 503, "service-unavailable", "Service unavailable"
# Connections kept alive per upstream when no size is given: gunicorn's default thread count of our web processes.
DEFAULT_POOL_SIZE = 8
# The longest request line ("GET /path?query HTTP/1.1") the upstreams read: gunicorn's limit_request_line. A
# longer one gunicorn refuses with an HTML page, so the gateway refuses it first (414).
UPSTREAM_REQUEST_LINE_LIMIT = 4094


class CircuitOpen(Exception):
    """The upstream failed repeatedly; calls are refused until `retry_after` seconds have passed."""

    def __init__(self, retry_after: float):
        super().__init__(f"circuit open for {retry_after:.1f}s")
        self.retry_after = retry_after


class CircuitBreaker:
    """Closed → open after `failure_threshold` consecutive failures → half-open after `open_seconds`.

    Half-open lets one trial call through: success closes the circuit, failure opens it again.
    """

    def __init__(self, failure_threshold: int = 5, open_seconds: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        if failure_threshold < 1 or open_seconds <= 0:
            raise ValueError("failure_threshold must be >= 1 and open_seconds > 0")
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_started: float | None = None

    @property
    def state(self) -> str:
        """"closed", "open" or "half-open"."""
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "open" if self._clock() - self._opened_at < self.open_seconds else "half-open"

    def before_call(self) -> None:
        """Raise CircuitOpen unless a call may go through now."""
        with self._lock:
            if self._opened_at is None:
                return
            now = self._clock()
            remaining = self._opened_at + self.open_seconds - now
            if remaining > 0:
                raise CircuitOpen(remaining)
            # Half-open: one trial at a time; a trial that never reported back is replaced after a while.
            if self._trial_started is not None and now - self._trial_started < self.open_seconds:
                raise CircuitOpen(self.open_seconds - (now - self._trial_started))
            self._trial_started = now

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_started = None

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_started is not None or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
                self._trial_started = None


IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def replayable(method: str, headers: Mapping[str, str]) -> bool:
    """True when sending the request twice has the effect of sending it once."""
    return method.upper() in IDEMPOTENT_METHODS or bool(headers.get("Idempotency-Key"))


class UpstreamBrokeOff(Exception):
    """An upstream stopped sending a streamed answer midway; the caller's connection is cut, so it sees a truncated
    body (no last chunk), never a complete-looking one."""


class UpstreamBody:
    """An upstream answer's body relayed to the caller as it arrives: the WSGI iterable of a streamed response.

    The upstream read timeout applies to each piece, not to the whole answer, so a long export keeps flowing. Read
    to its end, the connection goes back to the pool; when the caller goes away first (the WSGI server closes the
    iterable early) or the upstream breaks off, the connection is closed instead: it may still hold unread bytes.
    """

    def __init__(self, answer: urllib3.BaseHTTPResponse, upstream: str, breaker: CircuitBreaker):
        self._answer, self._upstream, self._breaker = answer, upstream, breaker
        self._complete = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._answer.stream(RELAY_PIECE)
        except (HTTPError, OSError) as exc:
            self._breaker.record_failure()
            log.warning("upstream %s broke off a streamed answer: %s", self._upstream, type(exc).__name__,
                        extra={"event": "gateway.upstream_broke_off", "upstream": self._upstream})
            raise UpstreamBrokeOff(f"the {self._upstream} service broke off its answer ({type(exc).__name__})") from exc
        self._complete = True

    def close(self) -> None:
        if not self._complete:
            self._answer.close()
        self._answer.release_conn()


class UpstreamStatusError(Exception):
    """An upstream answered a document request (readiness, OpenAPI) with an error status."""

    def __init__(self, upstream: str, status_code: int):
        super().__init__(f"{upstream} answered HTTP {status_code}")
        self.status_code = status_code
        self.response = self  # read as `exc.response.status_code` by the readiness report


class UpstreamProxy:
    """Forwards calls to upstreams by name, one circuit breaker and one keep-alive connection pool per upstream.

    The pools are urllib3's: no cookie jar, no proxy or .netrc settings from the environment, no redirects
    followed, no retries (a retried POST could apply twice; the caller decides).
    """

    def __init__(self, upstreams: Mapping[str, str], *, identity_key: str, timeout: float = 10.0,
                 token_ttl: float = MAX_TOKEN_TTL, failure_threshold: int = 5, open_seconds: float = 10.0,
                 pool_size: int = DEFAULT_POOL_SIZE):
        self.upstreams = {name: url.rstrip("/") for name, url in upstreams.items() if url}
        self.signer = TokenSigner(identity_key, ttl=token_ttl)
        self.timeout = timeout
        self.pool_size = pool_size
        self._threshold = failure_threshold
        self._open_seconds = open_seconds
        self._breakers: dict[str, CircuitBreaker] = {}
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self._pools: dict[str, tuple[urllib3.HTTPConnectionPool, str]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings, **overrides) -> UpstreamProxy:
        """A proxy for the upstreams, signing key and timeouts of `settings`."""
        options = {"identity_key": settings.identity_private_key, "timeout": settings.upstream_timeout,
                   "token_ttl": settings.identity_token_ttl}
        options.update(overrides)
        return cls(settings.upstreams, **options)

    def breaker(self, upstream: str) -> CircuitBreaker:
        """The circuit breaker of one upstream."""
        breaker = self._breakers.get(upstream)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.setdefault(upstream, CircuitBreaker(self._threshold, self._open_seconds))
        return breaker

    def _pool(self, base: str) -> tuple[urllib3.HTTPConnectionPool, str]:
        """The connection pool of an upstream base URL and the URL's own path, which prefixes every request path.

        Keyed by URL, so a changed URL gets a pool of its own.
        """
        found = self._pools.get(base)
        if found is None:
            with self._lock:
                found = self._pools.get(base)
                if found is None:
                    # maxsize = the threads that may call at once; block=False opens (and then drops) an extra
                    # connection rather than queueing a request when the parallel readiness probes add to them.
                    pool = urllib3.connection_from_url(base, maxsize=self.pool_size, block=False, retries=False)
                    found = self._pools[base] = (pool, urllib3.util.parse_url(base).path or "")
        return found

    def identity_headers(self, upstream: str, principal: Principal, request_id: str | None) -> dict[str, str]:
        """The headers that tell an upstream who is calling (a token for that upstream only) and the request id."""
        headers = {IDENTITY_HEADER: self.signer.token_for(principal, upstream)}
        if request_id:
            headers["X-Request-ID"] = request_id
        return headers

    def forward(self, upstream: str, *, method: str, path: str, query_string: bytes, headers: Mapping[str, str],
                body: bytes | BinaryIO, principal: Principal, request_id: str | None,
                body_length: int | None = None) -> Response:
        """Send one call to `upstream` and translate the answer (or the failure) into a response.

        `body` is the request's bytes, or a stream (an upload) sent as it is read, `body_length` bytes long (None:
        sent chunked). A long answer is relayed as it arrives (UpstreamBody).
        """
        base = self.upstreams.get(upstream)
        if base is None:
            return problem_response(503, "Service Unavailable",
                                    f"The {upstream} service is not configured on this gateway.", upstream=upstream)
        pool, prefix = self._pool(base)
        target = prefix + quote(path, safe="/:@!$&'()*+,;=-._~")
        if query_string:
            target += "?" + query_string.decode("latin-1")
        if len(f"{method} {target} HTTP/1.1") > UPSTREAM_REQUEST_LINE_LIMIT:
            return problem_response(414, "URI Too Long", "The path and query are too long for the "
                                    f"{upstream} service: send at most {UPSTREAM_REQUEST_LINE_LIMIT} bytes "
                                    "in the request line.", upstream=upstream)
        breaker = self.breaker(upstream)
        try:
            breaker.before_call()
        except CircuitOpen as exc:
            seconds = max(1, math.ceil(exc.retry_after))
            return problem_response(503, "Service Unavailable",
                                    f"The {upstream} service is failing; the gateway stopped calling it for a while.",
                                    upstream=upstream, headers={"Retry-After": str(seconds)})
        outgoing = {name: headers[name] for name in FORWARDED_REQUEST_HEADERS
                    if headers.get(name) or (name in FORWARDED_WHEN_EMPTY and headers.get(name) is not None)}
        outgoing.update(self.identity_headers(upstream, principal, request_id))
        if not isinstance(body, bytes):
            if body_length is not None:
                outgoing["Content-Length"] = str(body_length)  # else urllib3 sends the stream chunked
        elif not body:
            body = None
        try:
            answer = self._send(pool, method, target, body=body, headers=outgoing)
            content = self._read_short(answer)
        except TimeoutError as exc:
            breaker.record_failure()
            # urllib3 files a refused or unresolvable connection under its timeouts too; it is unreachable.
            if isinstance(exc, NewConnectionError):
                return self._unreachable(upstream, exc)
            log.warning("upstream %s timed out", upstream, extra={"event": "gateway.upstream_timeout", "upstream": upstream})
            return problem_response(504, "Gateway Timeout",
                                    f"The {upstream} service did not answer within {self.timeout:g} s.", upstream=upstream)
        except (HTTPError, OSError) as exc:
            breaker.record_failure()
            return self._unreachable(upstream, exc)
        except werkzeug.exceptions.HTTPException:
            # Reading the caller's streamed body failed (past its size limit: 413; the caller left): not the
            # upstream's fault. urllib3 has closed the half-sent request's connection.
            breaker.record_success()
            raise
        except Exception:
            breaker.record_failure()  # never leave a half-open trial unreported
            raise
        breaker.record_success()
        if answer.status >= 400 and not _is_json(answer.headers.get("Content-Type", "")):
            # Only gunicorn itself answers an upstream error in anything but problem+json: an HTML page for a
            # request it could not parse (a header past its size limit). It never reaches the caller.
            if content is None:  # unread: drop the connection rather than read a page nobody will see
                answer.close()
                answer.release_conn()
            log.warning("upstream %s refused a request with HTTP %s", upstream, answer.status,
                        extra={"event": "gateway.upstream_refused", "upstream": upstream})
            return problem_response(answer.status, answer.reason or "Bad Request",
                                    f"The {upstream} service refused the request before reading it.", upstream=upstream)
        return self._translate(answer, UpstreamBody(answer, upstream, breaker) if content is None else content, base)

    def _send(self, pool: urllib3.HTTPConnectionPool, method: str, target: str, *, body, headers):
        """urlopen, once more on a fresh connection when a replayable request lost its connection unanswered.

        A pooled keep-alive connection races the upstream's idle timer: gunicorn may close it just as we reuse
        it, and the request dies unanswered (a 502 for a healthy upstream; it failed the purchases reliability
        test). Only a request that is safe to send twice is sent again: an idempotent method (RFC 9110 §9.2.2)
        or one carrying an Idempotency-Key. A timeout is never retried: the upstream may still be working.
        """
        for attempt in (1, 2):
            try:
                # preload_content=False: the body is read by _read_short or relayed by UpstreamBody.
                return pool.urlopen(method, target, body=body, headers=headers, timeout=self._timeout,
                                    redirect=False, retries=False, assert_same_host=False, preload_content=False)
            except ProtocolError:
                # A streamed body (an upload) was consumed by the first attempt: it cannot be sent again.
                if attempt == 2 or not replayable(method, headers) or not isinstance(body, (bytes, type(None))):
                    raise

    @staticmethod
    def _unreachable(upstream: str, exc: BaseException) -> Response:
        log.warning("upstream %s unreachable: %s", upstream, type(exc).__name__,
                    extra={"event": "gateway.upstream_unreachable", "upstream": upstream})
        return problem_response(502, "Bad Gateway", f"The {upstream} service is unreachable.", upstream=upstream)

    @staticmethod
    def _read_short(answer: urllib3.BaseHTTPResponse) -> bytes | None:
        """The body of a short answer (by its Content-Length; none for HEAD, 204, 304), read whole, which returns
        the connection to the pool; None for a long one or one without a length, relayed by UpstreamBody."""
        remaining = answer.length_remaining
        if remaining is not None and remaining <= BUFFERED_ANSWER_MAX:
            return answer.read()
        return None

    @staticmethod
    def _translate(answer: urllib3.BaseHTTPResponse, content: bytes | UpstreamBody, base: str) -> Response:
        # A relayed body goes out without a Content-Length, so the WSGI server sends it chunked, piece by piece.
        response = Response(content, status=answer.status, direct_passthrough=isinstance(content, UpstreamBody))
        del response.headers["Content-Type"]
        for name in FORWARDED_RESPONSE_HEADERS:
            value = answer.headers.get(name)
            if value is None:
                continue
            if name == "Location" and value.startswith(base + "/"):
                value = value[len(base):]  # keep callers on the gateway, never on an internal address
            response.headers[name] = value
        return response

    def get_json(self, upstream: str, path: str, *, timeout: float, principal: Principal | None = None):
        """GET an upstream document (readiness, OpenAPI) outside the circuit breaker; raises on failure."""
        base = self.upstreams.get(upstream)
        if base is None:
            raise LookupError(f"no URL configured for {upstream}")
        headers = self.identity_headers(upstream, principal, None) if principal else {}
        pool, prefix = self._pool(base)
        answer = pool.urlopen("GET", prefix + path, headers=headers, timeout=urllib3.Timeout(connect=timeout, read=timeout),
                              redirect=False, retries=False, assert_same_host=False)
        if answer.status >= 400:
            raise UpstreamStatusError(upstream, answer.status)
        return json.loads(answer.data)

    def partner_exists(self, partner_id) -> bool:
        """Ask the partners service whether a partner exists; ServiceUnavailable when it cannot answer."""
        try:
            self.get_json("partners", f"/api/v1/partners/{partner_id}", timeout=PARTNER_LOOKUP_TIMEOUT,
                          principal=PARTNER_LOOKUP_PRINCIPAL)
            return True
        except UpstreamStatusError as exc:
            if exc.status_code == 404:
                return False
            raise PartnersUnavailable(f"The partners service answered {exc.status_code}; cannot check the partner "
                                     "now, so no partner key is made.") from None
        except (LookupError, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise PartnersUnavailable(f"The partners service is unreachable ({type(exc).__name__}); cannot check "
                                     "the partner now, so no partner key is made.") from None

    def close(self) -> None:
        """Release pooled connections."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool, _prefix in pools:
            pool.close()
