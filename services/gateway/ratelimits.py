"""Per-API-key rate limits (DESIGN §5) with flask-limiter: one moving window per key across the gateway."""
from __future__ import annotations

import logging
import math
import threading
import time
import weakref

from flask import Flask, Response, g, request
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from flask_limiter.util import get_remote_address
from limits import parse_many
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from services.common.problems import problem_response
from services.common.settings import Settings

LIMITED_PREFIX = "/api/v1/"  # the proxied API and the admin API; health, metrics and docs are never limited
STRATEGY = "moving-window"
DEFAULT_KEY_PREFIX = "crm-gateway"

log = logging.getLogger("crm.gateway")


class SweptMemoryStorage(MemoryStorage):
    """limits' in-process storage with its expired entries swept by one long-lived thread.

    The library's own memory storage starts a fresh 10 ms timer thread on nearly every counted request to drop
    expired entries (9 % of the gateway's CPU under load). The sweep only frees memory: the moving window compares
    timestamps itself. So one daemon thread sweeping once a second does the same job; it ends with the storage.
    """

    STORAGE_SCHEME = ["crm-memory"]
    SWEEP_SECONDS = 1.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._sweeper: threading.Thread | None = None
        self._sweeper_lock = threading.Lock()

    def _MemoryStorage__schedule_expiry(self) -> None:  # replaces the base class's per-call timer
        if self._sweeper is None:
            with self._sweeper_lock:
                if self._sweeper is None:
                    self._sweeper = threading.Thread(target=_sweep, args=(weakref.ref(self),),
                                                     name="rate-limit-sweeper", daemon=True)
                    self._sweeper.start()

    def sweep(self) -> None:
        """Drop the entries whose window has passed."""
        self._MemoryStorage__expire_events()


def _sweep(storage_ref: weakref.ref) -> None:
    while True:
        time.sleep(SweptMemoryStorage.SWEEP_SECONDS)
        storage = storage_ref()
        if storage is None:
            return
        storage.sweep()
        del storage


class AddressLimits:
    """Limits per client address that apply before any key is looked up (issue 7 §2).

    - Failed authentication (no key, an unknown or a revoked one): past `failed` such calls from one address, every
      call from it is refused with 429 until the window allows again, whatever key it sends. Guessing keys and
      flooding the key lookup (an unknown key is never cached: each costs a database read) stop here.
    - The public documents that fan out to every upstream (/readyz, /api/openapi.json): `public` per address and
      document.
    Counted in the same storage as the per-key limit (Redis when configured, so gateway replicas share it); a
    storage outage lets calls through, as for the per-key limit.
    """

    PUBLIC_PATHS = ("/readyz", "/api/openapi.json")

    def __init__(self, settings: Settings, *, key_prefix: str = DEFAULT_KEY_PREFIX):
        self.failed = parse_many(settings.rate_limit_failed_auth) if settings.rate_limit_failed_auth else []
        self.public = parse_many(settings.rate_limit_public) if settings.rate_limit_public else []
        self.prefix = key_prefix
        self.strategy = None
        if self.failed or self.public:
            storage = storage_from_string(settings.redis_url or "crm-memory://")
            self.strategy = MovingWindowRateLimiter(storage)

    def _retry_after(self, limit, *identifiers) -> int:
        try:
            reset_at, _remaining = self.strategy.get_window_stats(limit, self.prefix, *identifiers)
            return _seconds_until(reset_at)
        except Exception:  # noqa: BLE001 — the storage went away meanwhile
            return 1

    def _guarded(self, default, call):
        try:
            return call()
        except Exception:  # noqa: BLE001 — a storage outage must not take the API down
            log.warning("address rate limit storage unavailable", exc_info=True,
                        extra={"event": "ratelimit.storage_error"})
            return default

    def failures_exceeded(self, address: str) -> int | None:
        """Seconds to wait when `address` used up its failed authentications, else None."""
        for limit in self.failed:
            if not self._guarded(True, lambda: self.strategy.test(limit, self.prefix, "failed-auth", address)):
                return self._retry_after(limit, "failed-auth", address)
        return None

    def record_failure(self, address: str) -> None:
        for limit in self.failed:
            self._guarded(True, lambda: self.strategy.hit(limit, self.prefix, "failed-auth", address))

    def public_exceeded(self, path: str, address: str) -> int | None:
        """Count one call to a public document (each its own count); seconds to wait when over, else None."""
        for limit in self.public:
            if not self._guarded(True, lambda: self.strategy.hit(limit, self.prefix, "public", path, address)):
                return self._retry_after(limit, "public", path, address)
        return None


def too_many(detail: str, seconds: int) -> Response:
    return problem_response(429, "Too Many Requests", detail, headers={"Retry-After": str(seconds)},
                            retry_after=seconds)


def limit_key() -> str:
    """The caller's API key id; the remote address for a request no key authenticated (it is refused anyway)."""
    principal = getattr(g, "principal", None)
    return f"key:{principal.key_id}" if principal is not None else f"addr:{get_remote_address()}"


def _exempt() -> bool:
    return not request.path.startswith(LIMITED_PREFIX)


def _seconds_until(reset_at: float) -> int:
    return max(1, math.ceil(reset_at - time.time()))


def install_rate_limits(app: Flask, settings: Settings, *, key_prefix: str = DEFAULT_KEY_PREFIX) -> Limiter | None:
    """Limit every /api/v1/... call to `settings.rate_limit` per key; None when CRM_RATE_LIMIT is off.

    Call it after the authentication hook is registered: flask-limiter checks in its own before_request hook,
    which must run once g.principal is set.
    """
    if settings.rate_limit is None:
        return None
    limiter = Limiter(
        limit_key,
        application_limits=[settings.rate_limit],  # one counter per key shared by every route
        application_limits_exempt_when=_exempt,
        strategy=STRATEGY,
        storage_uri=settings.redis_url or "crm-memory://",
        key_prefix=key_prefix,
        # The gateway writes the headers itself (below): flask-limiter's own would put a Retry-After on every
        # response and overwrite the one an upstream or the circuit breaker sent.
        headers_enabled=False,
        # A Redis outage must not take the API down: log and let the call through.
        swallow_errors=True,
    )
    limiter.init_app(app)

    def retry_after() -> int:
        current = limiter.current_limit
        try:
            return _seconds_until(current.window[0]) if current is not None else 1
        except Exception:  # noqa: BLE001 — storage gone between the check and now
            return 1

    @app.errorhandler(RateLimitExceeded)
    def _too_many_requests(exc: RateLimitExceeded):
        seconds = retry_after()
        return too_many(f"This API key exceeded its rate limit of {exc.limit.limit}; retry in {seconds} s.", seconds)

    @app.after_request
    def _rate_limit_headers(response: Response) -> Response:
        current = limiter.current_limit
        if current is None:
            return response
        try:
            response.headers["X-RateLimit-Limit"] = str(current.limit.amount)
            response.headers["X-RateLimit-Remaining"] = str(max(0, current.remaining))
            response.headers["X-RateLimit-Reset"] = str(int(current.reset_at))
        except Exception:  # noqa: BLE001 — the limit storage failed; the call itself already went through
            log.warning("rate limit headers unavailable", exc_info=True, extra={"event": "ratelimit.storage_error"})
        return response

    app.extensions["crm.limiter"] = limiter
    return limiter
