"""Process settings read from the environment and validated at start-up (twelve-factor)."""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Mapping

from limits import parse_many

from .currencies import ISO_4217
from .identity import MAX_TOKEN_TTL, IdentityKeyError, load_private_key, load_public_key, public_pem

# Which services exist is the suite registry's business (crm/registry.py); the kit only checks the name's shape.
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
DEFAULT_GATEWAY_PORT = 8080
# A plain `crm worker` serves its ops endpoints here, on every interface (a container's port); `crm run` gives
# each worker its web port + 1000 on the loopback interface instead (crm/processes.py).
DEFAULT_WORKER_HOST = "0.0.0.0"
DEFAULT_WORKER_PORT = 9090


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""

    def __init__(self, variable: str, problem: str):
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


def _number(kind: type, *, above: float | None = None, at_least: float | None = None,
            at_most: float | None = None, unit: str = "") -> Callable[[str, str], float]:
    """A parser of one number setting: `kind` (int or float) within the given bounds; errors name the variable."""
    expected = "a whole number" if kind is int else "a number"

    def show(bound: float) -> str:  # 1048576, not 1.04858e+06
        return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"

    def parse(name: str, raw: str):
        try:
            value = kind(raw)
        except ValueError:
            raise SettingsError(name, f"expected {expected}{unit and ' of' + unit}, got {raw!r}") from None
        if above is not None and value <= above:
            raise SettingsError(name, f"must be greater than {show(above)}, got {raw!r}")
        if at_least is not None and value < at_least:
            raise SettingsError(name, f"must be {show(at_least)} or more, got {raw!r}")
        if at_most is not None and value > at_most:
            raise SettingsError(name, f"must be at most {show(at_most)}{unit}, got {raw!r}")
        return value

    return parse


_positive_float = _number(float, above=0)
_positive_int = _number(int, above=0)
_non_negative_int = _number(int, at_least=0)
_non_negative_float = _number(float, at_least=0)
# Seconds a partial consumer batch waits for more deliveries: 0 (none) up to 1 (latency and heartbeats).
_linger = _number(float, at_least=0, at_most=1, unit=" seconds")
# Whole days; at least 1, since an inbox row must outlive every redelivery of its event (operations.md).
_retention_days = _number(int, above=0, at_most=3650, unit=" days")
# Milliseconds one plugin call may take: 1 to 60000 (a request waits this long at most per hook).
_plugin_timeout_ms = _number(int, above=0, at_most=60_000, unit=" ms")
_token_ttl = _number(float, above=0, at_most=MAX_TOKEN_TTL, unit=" seconds")
# Bytes an upload route takes (web.py `upload_arguments`): at least what every route takes (1 MiB), at most 1 GiB
# (waitress, in front of the gateway, refuses a larger body before the app sees it).
MAX_JSON_BYTES = 1 << 20
_upload_bytes = _number(int, at_least=MAX_JSON_BYTES, at_most=1 << 30, unit=" bytes")


def _port(name: str, raw: str) -> int:
    value = _positive_int(name, raw)
    if value > 65535:
        raise SettingsError(name, f"not a TCP port: {raw!r}")
    return value


_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")


def _host(name: str, raw: str) -> str:
    """An interface to listen on: an IP address (v4 or v6) or a host name; no scheme, port or spaces."""
    try:
        return str(ipaddress.ip_address(raw.strip("[]")))
    except ValueError:
        pass
    if not _HOST_NAME.match(raw):
        raise SettingsError(name, f"expected an IP address or host name to listen on, e.g. 0.0.0.0, got {raw!r}")
    return raw


def _delays(name: str, raw: str) -> tuple[float, ...]:
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts:
        raise SettingsError(name, "expected a comma-separated list of seconds, e.g. 1,5,30")
    return tuple(_positive_float(name, p) for p in parts)


def _names(name: str, raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def _url(schemes: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if not raw.startswith(tuple(s + ":" for s in schemes)):
            raise SettingsError(name, f"expected a URL starting with one of {', '.join(schemes)}, got {raw!r}")
        return raw

    return parse


def _log_level(name: str, raw: str) -> str:
    level = raw.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise SettingsError(name, f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {raw!r}")
    return level


def _phone_region(name: str, raw: str) -> str:
    """An ISO 3166 region that phone numbers written without +country code are read in (e.g. DE, US)."""
    import phonenumbers  # only read when the variable is set

    region = raw.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise SettingsError(name, f"expected a two-letter region code such as DE or US, got {raw!r}")
    return region


def _currency(name: str, raw: str) -> str:
    """An ISO 4217 currency code such as EUR (any case; kept in capitals)."""
    code = raw.strip().upper()
    if code not in ISO_4217:
        raise SettingsError(name, f"expected an ISO 4217 currency code such as EUR or USD, got {raw!r}")
    return code


RATE_LIMIT_OFF = ("0", "off")


def _rate_limit(name: str, raw: str) -> str | None:
    """A flask-limiter limit string such as "600/minute" or "10/second;600/minute"; "0" or "off" disables."""
    value = raw.strip()
    if value.lower() in RATE_LIMIT_OFF:
        return None
    try:
        parsed = parse_many(value)
    except ValueError:
        parsed = []
    if not parsed or any(item.amount < 1 for item in parsed):
        raise SettingsError(name, f"expected a rate limit such as 600/minute or 10/second;600/minute "
                                  f"(or 0/off to disable), got {raw!r}")
    return value


def _identity_key(env: Mapping[str, str], name: str, load) -> str:
    """The PEM text of NAME, or of the file NAME_FILE names (not both), checked with `load`; "" when unset."""
    inline, path = env.get(name) or "", env.get(f"{name}_FILE") or ""
    if inline and path:
        raise SettingsError(name, f"set {name} or {name}_FILE, not both")
    if path:
        name = f"{name}_FILE"
        try:
            inline = Path(path).read_text()
        except OSError as exc:
            raise SettingsError(name, f"cannot read {path}: {exc.strerror or exc}") from None
    if inline:
        try:
            load(inline)
        except IdentityKeyError as exc:
            raise SettingsError(name, str(exc)) from None
    return inline


_KEY_PAIR_HINT = "`crm identity init` writes a key pair"
# Each key is given inline or as a file (read by `_identity_key`): the gateway's private key, everyone's public.
IDENTITY_KEY_VARIABLES = ("CRM_IDENTITY_PRIVATE_KEY", "CRM_IDENTITY_PRIVATE_KEY_FILE",
                          "CRM_IDENTITY_PUBLIC_KEY", "CRM_IDENTITY_PUBLIC_KEY_FILE")


@dataclass(frozen=True)
class Settings:
    """Everything a CRM process reads from its environment."""

    service: str
    database_url: str
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    data_dir: Path = Path("var")
    identity_private_key: str = ""  # PEM, the gateway's only: it signs identity tokens
    identity_public_key: str = ""  # PEM: services verify identity tokens with it
    identity_token_ttl: float = MAX_TOKEN_TTL
    log_level: str = "INFO"
    plugins_dir: str | None = None
    plugins_disabled: tuple[str, ...] = ()
    plugin_timeout_ms: int = 200  # a plugin call past this is dropped from the decision (degraded)
    retry_delays: tuple[float, ...] = (1.0, 5.0, 30.0)
    prefetch: int = 500
    consumer_batch_size: int = 200  # deliveries handled in one transaction
    consumer_batch_linger: float = 0.005  # seconds a partial batch waits for more deliveries
    relay_batch_size: int = 200
    relay_poll_interval: float = 0.5
    relay_lease_seconds: float = 15.0
    upstream_timeout: float = 10.0
    upstreams: Mapping[str, str] = field(default_factory=dict)
    gateway_port: int = 8080
    gateway_routes: str | None = None  # path of a route-table JSON replacing the registry's default table
    redis_url: str | None = None
    rate_limit: str | None = "600/minute"  # per API key, across the gateway; None disables
    # Before authentication, per client address: calls with a missing, unknown or revoked key, and the public
    # documents that fan out to every upstream (/readyz, /api/openapi.json). None disables.
    rate_limit_failed_auth: str | None = "30/minute"
    rate_limit_public: str | None = "120/minute"
    proxy_hops: int = 0  # trusted proxies in front of the gateway whose X-Forwarded-For names the client
    key_cache_seconds: float = 5.0  # how long the gateway trusts a cached API key (revocation is at once anyway)
    worker_host: str = DEFAULT_WORKER_HOST  # where a worker serves /healthz, /readyz and /metrics
    worker_port: int = DEFAULT_WORKER_PORT
    retention_days: int = 7  # published outbox rows, inbox rows and idempotency keys older than this are purged
    # Where a phone number without +country code is (duplicate contacts); None: such numbers match digit for digit.
    default_phone_region: str | None = None
    max_upload_bytes: int = 32 << 20  # the body an upload route takes (CSV imports); every other route 1 MiB
    # The currency analytics report in when a request names none (figures are per currency, never converted).
    base_currency: str = "EUR"
    # Contacts analytics (docs/analytics.md): parameter overrides as a JSON object (checked by the contacts
    # service at start-up), seconds between scheduled refreshes (0: none), and the most contacts a report's
    # ?refresh=true computes in the request.
    analytics_parameters: str = ""
    analytics_refresh_interval: float = 86400.0
    analytics_sync_limit: int = 10_000
    # Partners negotiation (docs/api-partners.md): days a proposal stays open unless it says otherwise, and the
    # JSON object of term -> largest change an internal acceptance may make without partners:approve (checked by
    # the partners service at start-up; "" means its defaults).
    partners_proposal_days: int = 14
    partners_approval_limits: str = ""
    # Hours a partner dispute may stay unresolved before crm.dispute.overdue is published (once).
    partners_dispute_sla_hours: float = 120.0
    # Seconds between runs of the partners worker's renewal job (expiring, expired and renewed contracts); 0: off.
    partners_renewal_interval: float = 86400.0
    # Partner scorecards (docs/api-partners.md): a JSON object of measure -> weight in the overall score (checked
    # by the partners service at start-up; "" means its defaults).
    partners_scorecard_weights: str = ""
    # Termination policies (docs/termination.md): days of history a policy looks at, seconds between scheduled
    # evaluations of the enabled policies (0: none), days a dismissed recommendation keeps the same findings
    # from being recommended again, and subjects per batch of a simulation or evaluation.
    termination_window_days: int = 365
    termination_evaluate_interval: float = 86400.0
    termination_dismissal_days: int = 90
    termination_batch: int = 500

    def replace(self, **changes) -> "Settings":
        """A copy with some values changed (tests use this)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


def default_web_processes(cpu_count: int | None = None) -> int:
    """Processes per web service when CRM_WEB_PROCESSES is unset: half the CPUs (every service and the gateway
    run side by side on one machine), at least one."""
    cpus = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return max(1, cpus // 2)


DEFAULT_WEB_THREADS = 8


def web_concurrency(env: Mapping[str, str] | None = None, *, cpu_count: int | None = None) -> tuple[int, int]:
    """(processes, threads) of each gunicorn web service: CRM_WEB_PROCESSES and CRM_WEB_THREADS, validated."""
    env = os.environ if env is None else env
    return (_read(env, "CRM_WEB_PROCESSES", _positive_int, default_web_processes(cpu_count)),
            _read(env, "CRM_WEB_THREADS", _positive_int, DEFAULT_WEB_THREADS))


def _read(env: Mapping[str, str], name: str, parse, default):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return parse(name, raw)


def _identity_keys(env: Mapping[str, str], *, require: bool, signs: bool) -> tuple[str, str]:
    """(private PEM, public PEM) of one process: the gateway signs, every other process only verifies."""
    if env.get("CRM_IDENTITY_SECRET"):
        raise SettingsError("CRM_IDENTITY_SECRET", "is no longer read: identity tokens are signed with an Ed25519 "
                            "key; give the gateway CRM_IDENTITY_PRIVATE_KEY(_FILE) and every service "
                            f"CRM_IDENTITY_PUBLIC_KEY(_FILE) ({_KEY_PAIR_HINT})")
    public = _identity_key(env, "CRM_IDENTITY_PUBLIC_KEY", load_public_key)
    if not signs:
        # A process that serves requests refuses the private key; an admin command (require=False) ignores it.
        if require and (env.get("CRM_IDENTITY_PRIVATE_KEY") or env.get("CRM_IDENTITY_PRIVATE_KEY_FILE")):
            raise SettingsError("CRM_IDENTITY_PRIVATE_KEY", "is for the gateway only: a service that holds it could "
                                "mint identity tokens; give services only CRM_IDENTITY_PUBLIC_KEY(_FILE)")
        if require and not public:
            raise SettingsError("CRM_IDENTITY_PUBLIC_KEY", "is required: services verify the gateway's identity "
                                f"tokens with it (set it or CRM_IDENTITY_PUBLIC_KEY_FILE; {_KEY_PAIR_HINT})")
        return "", public
    private = _identity_key(env, "CRM_IDENTITY_PRIVATE_KEY", load_private_key)
    if require and not private:
        raise SettingsError("CRM_IDENTITY_PRIVATE_KEY", "is required: the gateway signs identity tokens with it "
                            f"(set it or CRM_IDENTITY_PRIVATE_KEY_FILE; {_KEY_PAIR_HINT})")
    if private:
        derived = public_pem(load_private_key(private))
        if public and load_public_key(public) != load_public_key(derived):
            raise SettingsError("CRM_IDENTITY_PUBLIC_KEY", "is not the public half of CRM_IDENTITY_PRIVATE_KEY")
        public = derived
    return private, public


def from_env(service: str, env: Mapping[str, str] | None = None, *, require_secret: bool = True,
             upstreams: Mapping[str, int] | None = None, signs_identity: bool = False) -> Settings:
    """Build and validate the settings of one process; raises SettingsError naming the bad variable.

    `upstreams` (name -> default port, from the suite registry) is given for the gateway: each becomes a
    CRM_<NAME>_URL setting defaulting to that port on the loopback interface. `signs_identity` marks the
    gateway: it needs the identity private key, and every other process refuses to start with it.
    `require_secret=False` (CLI commands that serve no requests) lets the keys be absent.
    """
    env = os.environ if env is None else env
    if not _SERVICE_NAME.match(service or ""):
        raise SettingsError("service", f"not a service name: {service!r}")
    data_dir = Path(env.get("CRM_DATA_DIR") or "var")
    db_var = f"{service.upper()}_DATABASE_URL"
    db_url = env.get(db_var) or env.get("DATABASE_URL")
    db_name = db_var if env.get(db_var) else "DATABASE_URL"
    if db_url:
        _url(("sqlite", "postgresql", "postgresql+psycopg"))(db_name, db_url)
    else:
        db_url = f"sqlite:///{(data_dir / f'{service}.db').resolve()}"
    private_key, public_key = _identity_keys(env, require=require_secret, signs=signs_identity)
    gateway_port = _read(env, "CRM_GATEWAY_PORT", _port, DEFAULT_GATEWAY_PORT)
    upstream_urls = {
        svc: _read(env, f"CRM_{svc.upper()}_URL", _url(("http", "https")), f"http://127.0.0.1:{port}")
        for svc, port in (upstreams or {}).items()
    }
    prefetch = _read(env, "CRM_PREFETCH", _positive_int, Settings.prefetch)
    consumer_batch_size = _read(env, "CRM_CONSUMER_BATCH_SIZE", _positive_int, min(Settings.consumer_batch_size, prefetch))
    if consumer_batch_size > prefetch:
        # The broker sends no more than `prefetch` unacked deliveries, so a larger batch could never fill.
        raise SettingsError("CRM_CONSUMER_BATCH_SIZE", f"must not exceed CRM_PREFETCH ({prefetch}), got {consumer_batch_size}")
    return Settings(
        service=service,
        database_url=db_url,
        amqp_url=_read(env, "AMQP_URL", _url(("amqp", "amqps")), Settings.amqp_url),
        data_dir=data_dir,
        identity_private_key=private_key,
        identity_public_key=public_key,
        identity_token_ttl=_read(env, "CRM_IDENTITY_TOKEN_TTL", _token_ttl, MAX_TOKEN_TTL),
        log_level=_read(env, "CRM_LOG_LEVEL", _log_level, "INFO"),
        plugins_dir=env.get("CRM_PLUGINS_DIR") or None,
        plugins_disabled=_read(env, "CRM_PLUGINS_DISABLED", _names, ()),
        plugin_timeout_ms=_read(env, "CRM_PLUGIN_TIMEOUT_MS", _plugin_timeout_ms, Settings.plugin_timeout_ms),
        retry_delays=_read(env, "CRM_RETRY_DELAYS", _delays, (1.0, 5.0, 30.0)),
        prefetch=prefetch,
        consumer_batch_size=consumer_batch_size,
        consumer_batch_linger=_read(env, "CRM_CONSUMER_BATCH_LINGER", _linger, Settings.consumer_batch_linger),
        relay_batch_size=_read(env, "CRM_RELAY_BATCH_SIZE", _positive_int, 200),
        relay_poll_interval=_read(env, "CRM_RELAY_POLL_INTERVAL", _positive_float, 0.5),
        relay_lease_seconds=_read(env, "CRM_RELAY_LEASE_SECONDS", _positive_float, 15.0),
        upstream_timeout=_read(env, "CRM_UPSTREAM_TIMEOUT", _positive_float, 10.0),
        upstreams=upstream_urls,
        gateway_port=gateway_port,
        gateway_routes=env.get("CRM_GATEWAY_ROUTES") or None,
        redis_url=env.get("REDIS_URL") or None,
        rate_limit=_read(env, "CRM_RATE_LIMIT", _rate_limit, Settings.rate_limit),
        rate_limit_failed_auth=_read(env, "CRM_RATE_LIMIT_FAILED_AUTH", _rate_limit, Settings.rate_limit_failed_auth),
        rate_limit_public=_read(env, "CRM_RATE_LIMIT_PUBLIC", _rate_limit, Settings.rate_limit_public),
        proxy_hops=_read(env, "CRM_PROXY_HOPS", _non_negative_int, 0),
        key_cache_seconds=_read(env, "CRM_KEY_CACHE_SECONDS", _positive_float, Settings.key_cache_seconds),
        worker_host=_read(env, "CRM_WORKER_HOST", _host, DEFAULT_WORKER_HOST),
        worker_port=_read(env, "CRM_WORKER_PORT", _port, DEFAULT_WORKER_PORT),
        retention_days=_read(env, "CRM_RETENTION_DAYS", _retention_days, Settings.retention_days),
        default_phone_region=_read(env, "CRM_DEFAULT_PHONE_REGION", _phone_region, None),
        max_upload_bytes=_read(env, "CRM_MAX_UPLOAD_BYTES", _upload_bytes, Settings.max_upload_bytes),
        base_currency=_read(env, "CRM_BASE_CURRENCY", _currency, Settings.base_currency),
        analytics_parameters=env.get("CRM_ANALYTICS_PARAMETERS") or "",
        analytics_refresh_interval=_read(env, "CRM_ANALYTICS_REFRESH_INTERVAL", _non_negative_float,
                                         Settings.analytics_refresh_interval),
        analytics_sync_limit=_read(env, "CRM_ANALYTICS_SYNC_LIMIT", _non_negative_int, Settings.analytics_sync_limit),
        partners_proposal_days=_read(env, "CRM_PARTNERS_PROPOSAL_DAYS",
                                     _number(int, above=0, at_most=365, unit=" days"), Settings.partners_proposal_days),
        partners_approval_limits=env.get("CRM_PARTNERS_APPROVAL_LIMITS") or "",
        partners_dispute_sla_hours=_read(env, "CRM_PARTNERS_DISPUTE_SLA_HOURS", _positive_float,
                                         Settings.partners_dispute_sla_hours),
        partners_renewal_interval=_read(env, "CRM_PARTNERS_RENEWAL_INTERVAL", _non_negative_float,
                                        Settings.partners_renewal_interval),
        partners_scorecard_weights=env.get("CRM_PARTNERS_SCORECARD_WEIGHTS") or "",
        termination_window_days=_read(env, "CRM_TERMINATION_WINDOW_DAYS",
                                      _number(int, above=0, at_most=3650, unit=" days"),
                                      Settings.termination_window_days),
        termination_evaluate_interval=_read(env, "CRM_TERMINATION_EVALUATE_INTERVAL", _non_negative_float,
                                            Settings.termination_evaluate_interval),
        termination_dismissal_days=_read(env, "CRM_TERMINATION_DISMISSAL_DAYS",
                                         _number(int, at_least=0, at_most=3650, unit=" days"),
                                         Settings.termination_dismissal_days),
        termination_batch=_read(env, "CRM_TERMINATION_BATCH", _number(int, above=0, at_most=10_000),
                                Settings.termination_batch),
    )
