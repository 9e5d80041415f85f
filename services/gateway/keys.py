"""API-key use cases: create, authenticate, list and revoke. The only code that changes key state.

A key reads `crm_<kind>_<random>`; `<random>` is 32 bytes from `secrets` (256 bits), URL-safe base64.
Only the first 12 characters of `<random>` (the public prefix, indexed) and the SHA-256 of the whole
key are stored, so a leaked table does not leak usable keys. The use cases work inside the caller's
session; the caller commits (a unit of work in the app, one transaction in the CLI).

Requests are authenticated through `KeyCache`: keys are cached in process for a few seconds, and a revision
counter that every revocation bumps (checked once per request) makes a revocation take effect at once in
every gateway process.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import psycopg
from sqlalchemy import bindparam, event, or_, select, update
from sqlalchemy.engine import Engine

from services.common.db import is_postgres, read_only_engine, utcnow
from crm.registry import SUITE
from services.common.identity import ADMIN_SCOPE, PLUGINS_READ, WILDCARD_ACTIONS, Principal
from services.common.pagination import paginate
from services.common.problems import NotFound, Unprocessable

from .models import KEY_SORTS, REVISION_ROW, ApiKey, KeyRevision

KINDS = ("internal", "partner")
PREFIX_LENGTH = 12
RANDOM_BYTES = 32
# Scopes beyond `<svc>:read|write`: no `<svc>:*` includes them, a key names them.
PRIVILEGED_SCOPES = ("loyalty:admin", PLUGINS_READ,
                     # bulk or irreversible operations on personal data (docs/api-contacts.md)
                     "contacts:import", "contacts:export", "contacts:merge", "contacts:erase",
                     # starts a computation over every customer (docs/analytics.md)
                     "contacts:analytics",
                     # accepting a change of a contract's terms beyond CRM_PARTNERS_APPROVAL_LIMITS (docs/api-partners.md)
                     "partners:approve",
                     # termination policies (docs/termination.md): reading the evidence, managing policies and
                     # running simulations over every customer or partner, and deciding on a recommendation
                     "termination:read", "termination:manage", "termination:decide")
NAME_MAX = 100
# Writing last_used_at on every request would turn each call into a write; a minute is precise enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Bounds the cache's memory even with very many keys; only keys that exist are ever cached.
CACHE_MAX_ENTRIES = 10_000
# Longer than any key we mint; anything bigger is rejected before hashing.
_MAX_PRESENTED = 200
# Compared against when the prefix is unknown, so both outcomes do the same hashing and comparison.
_DECOY_HASH = hashlib.sha256(b"crm-gateway-decoy").hexdigest()


# -- pure helpers (no database) -------------------------------------------------------------------------

def hash_key(plaintext: str) -> str:
    """The hex SHA-256 of a whole key, as stored."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def generate_key(kind: str) -> tuple[str, str, str]:
    """Mint a new key of `kind`; returns (plaintext, public prefix, hash)."""
    if kind not in KINDS:
        raise ValueError(f"unknown key kind {kind!r}")
    random_part = secrets.token_urlsafe(RANDOM_BYTES)
    plaintext = f"crm_{kind}_{random_part}"
    return plaintext, random_part[:PREFIX_LENGTH], hash_key(plaintext)


def parse_key(presented: str | None) -> tuple[str, str] | None:
    """Split a presented key into (kind, public prefix); None when it is not shaped like one of ours."""
    if not presented or len(presented) > _MAX_PRESENTED:
        return None
    for kind in KINDS:
        head = f"crm_{kind}_"
        if presented.startswith(head):
            random_part = presented[len(head):]
            if len(random_part) < PREFIX_LENGTH:
                return None
            return kind, random_part[:PREFIX_LENGTH]
    return None


def key_matches(stored_hash: str, presented: str) -> bool:
    """Compare the presented key with a stored hash in constant time."""
    return hmac.compare_digest(stored_hash.encode("ascii"), hash_key(presented).encode("ascii"))


def known_scopes() -> frozenset[str]:
    """Every scope a key may carry: `admin`, the privileged ones, and `<svc>:read|write|*` of each upstream.

    Only these: a scope no service checks would be dead weight at best, and at worst match a rule it was
    never meant for (`admin:*` once passed the `<name>:*` shape and, through the wildcard, granted `admin`).
    """
    services = [entry.name for entry in SUITE.upstreams]
    return frozenset({ADMIN_SCOPE, *PRIVILEGED_SCOPES,
                      *(f"{service}:{action}" for service in services for action in (*WILDCARD_ACTIONS, "*"))})


def validate_scopes(scopes: Iterable[str]) -> list[str]:
    """Sorted, de-duplicated scopes; raises Unprocessable naming every one no service defines."""
    cleaned = sorted({s.strip() for s in scopes if s and s.strip()})
    known = known_scopes()
    bad = [s for s in cleaned if s not in known]
    if bad:
        services = ", ".join(entry.name for entry in SUITE.upstreams)
        raise Unprocessable(
            f"Unknown scope(s): {', '.join(bad)}. A key may carry `admin`, {', '.join(f'`{s}`' for s in PRIVILEGED_SCOPES)}"
            f" or `<service>:read`, `<service>:write`, `<service>:*` for a service of {services}.",
            errors={"scopes": [f"Unknown scope {s!r}." for s in bad]})
    return cleaned


def validate_name(name: str | None) -> str:
    """The key's display name, stripped; 1 to 100 characters."""
    cleaned = (name or "").strip()
    if not 1 <= len(cleaned) <= NAME_MAX:
        raise Unprocessable(f"The name must be 1 to {NAME_MAX} characters.",
                            errors={"name": [f"Length must be between 1 and {NAME_MAX}."]})
    return cleaned


def _partner_uuid(partner_id) -> uuid.UUID:
    if isinstance(partner_id, uuid.UUID):
        return partner_id
    try:
        return uuid.UUID(str(partner_id))
    except ValueError:
        raise Unprocessable("The partner id is not a UUID.", errors={"partner_id": ["Not a valid UUID."]}) from None


def principal_of(key) -> Principal:
    """The identity a key (an ApiKey or a row with the same columns) stands for."""
    return Principal(key_id=str(key.id), kind=key.kind, scopes=frozenset(key.scopes or ()),
                     partner_id=str(key.partner_id) if key.partner_id else None, name=key.name)


@dataclass(frozen=True)
class KeyRecord:
    """What checking a presented key needs of a stored one: its hash and principal, never the key itself."""

    id: uuid.UUID
    kind: str
    key_hash: str
    revoked: bool
    principal: Principal
    last_used_at: datetime | None

    @classmethod
    def of(cls, key) -> KeyRecord:
        """The record of an ApiKey (or a row with the same columns)."""
        return cls(id=key.id, kind=key.kind, key_hash=key.key_hash, revoked=key.revoked_at is not None,
                   principal=principal_of(key), last_used_at=key.last_used_at)


def check_presented(record: KeyRecord | None, presented: str, kind: str) -> Principal | None:
    """The principal when `presented` is the unrevoked key of `kind` that `record` describes, else None.

    Exactly one constant-time comparison either way (against a decoy when no key has the prefix), so an unknown
    prefix costs what a wrong secret does.
    """
    if record is None:
        key_matches(_DECOY_HASH, presented)
        return None
    if not key_matches(record.key_hash, presented) or record.kind != kind or record.revoked:
        return None
    return record.principal


def last_use_due(last_used_at: datetime | None, now: datetime) -> bool:
    """True when last_used_at is unset or at least LAST_USED_RESOLUTION old."""
    return last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION


# -- use cases ------------------------------------------------------------------------------------------

def create_key(session, *, name: str, scopes: Iterable[str] = (), partner_id=None,
               partner_exists: Callable[[uuid.UUID], bool] | None = None) -> tuple[ApiKey, str]:
    """Create a key; a partner key when `partner_id` is given (no scopes), else an internal one.

    `partner_exists` asks the partners service (which owns partners) whether the partner is there; the admin API
    and the CLI always pass it, so no key is bound to a partner that does not exist. Returns the row and the
    plaintext, which is never stored and cannot be shown again.
    """
    name = validate_name(name)
    scopes = list(scopes or ())
    if partner_id is not None:
        if scopes:
            raise Unprocessable("A partner key carries no scopes; it may call only the partner portal.",
                                errors={"scopes": ["Must be empty for a partner key."]})
        kind, partner, scope_list = "partner", _partner_uuid(partner_id), []
        if partner_exists is not None and not partner_exists(partner):
            raise Unprocessable(f"No partner with id {partner}; create the partner first.",
                                errors={"partner_id": ["No partner with this id."]})
    else:
        kind, partner, scope_list = "internal", None, validate_scopes(scopes)
    plaintext, prefix, digest = generate_key(kind)
    key = ApiKey(name=name, kind=kind, prefix=prefix, key_hash=digest, scopes=scope_list, partner_id=partner)
    session.add(key)
    session.flush()
    return key, plaintext


def list_keys(session, *, limit: int | None = None, cursor: str | None = None, sort: str | None = None) -> dict:
    """Keys newest first or by `sort` as {"items", "next_cursor"}; every key, newest first, when `limit` is None."""
    stmt = select(ApiKey)
    if limit is None:
        return {"items": list(session.scalars(stmt.order_by(ApiKey.seq.desc()))), "next_cursor": None}
    return paginate(session, stmt, ApiKey.seq, limit=limit, cursor=cursor, sort=sort, columns=KEY_SORTS)


def get_key(session, key_id) -> ApiKey:
    """One key by id; NotFound when there is none."""
    try:
        wanted = key_id if isinstance(key_id, uuid.UUID) else uuid.UUID(str(key_id))
    except ValueError:
        raise NotFound(f"No API key {key_id}.") from None
    key = session.scalar(select(ApiKey).where(ApiKey.id == wanted))
    if key is None:
        raise NotFound(f"No API key {key_id}.")
    return key


def revoke_key(session, key_id, *, now: datetime | None = None) -> ApiKey:
    """Revoke a key at once; revoking it again keeps the first revocation time."""
    key = get_key(session, key_id)
    if key.revoked_at is None:
        key.revoked_at = now or utcnow()
        # Same transaction as the revocation: no gateway process can see the new revision without it.
        bump_revision(session)
        session.flush()
    return key


def bump_revision(session) -> None:
    """Advance the key revision counter, so every gateway process reloads its cached keys."""
    bumped = session.execute(update(KeyRevision).where(KeyRevision.id == REVISION_ROW)
                             .values(version=KeyRevision.version + 1))
    if bumped.rowcount == 0:  # a database built without the migration that seeds the row
        session.add(KeyRevision(id=REVISION_ROW, version=1))


def ensure_admin_key(session) -> str | None:
    """On first start (no key at all), create an `admin` key named "admin" and return it; else None."""
    if session.scalar(select(ApiKey.seq).limit(1)) is not None:
        return None
    _key, plaintext = create_key(session, name="admin", scopes=[ADMIN_SCOPE])
    return plaintext


# -- the request path: a key cache with revocation at once ---------------------------------------------------

class KeySource(Protocol):
    """Where KeyCache reads keys and the revision counter, and records use."""

    def revision(self) -> int | None:
        """The current value of the revision counter."""

    def load(self, prefix: str) -> tuple[KeyRecord | None, int | None]:
        """The key with this public prefix (None when there is none) and the revision, read in one snapshot."""

    def record_use(self, key_id: uuid.UUID, now: datetime) -> None:
        """Set last_used_at to `now` unless another process did so within LAST_USED_RESOLUTION."""


REVISION_SQL = f"SELECT version FROM api_key_revisions WHERE id = {REVISION_ROW}"


class _PostgresRevisionReader:
    """Reads the revision counter over one autocommit psycopg connection per thread.

    It runs on every request: a pooled SQLAlchemy Core query (checkout, compile-cache lookup, result processing,
    checkin) cost the gateway about 0.45 ms of CPU; this costs about a tenth of that, in one round trip
    (psycopg prepares the statement after a few runs).
    """

    def __init__(self, conninfo: str):
        self._conninfo = conninfo
        self._local = threading.local()
        self._opened: list[psycopg.Connection] = []
        self._lock = threading.Lock()

    def __call__(self) -> int | None:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._connect()
        try:
            row = conn.execute(REVISION_SQL).fetchone()
        except psycopg.OperationalError:
            # The server closed the connection (restart, failover, idle timeout): one retry on a fresh one.
            conn.close()
            row = self._connect().execute(REVISION_SQL).fetchone()
        return row[0] if row else None

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self._conninfo, autocommit=True)
        self._local.conn = conn
        with self._lock:
            self._opened = [c for c in self._opened if not c.closed] + [conn]
        return conn

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()


class SqlKeySource:
    """KeySource on the gateway database: each call is one statement."""

    def __init__(self, engine: Engine):
        self._writes = engine
        self._fast_revision = None
        if is_postgres(engine):
            # One statement sees one snapshot, so autocommit loses nothing for the reads and spares the BEGIN
            # and COMMIT round trips of a transaction.
            self._reads = engine.execution_options(isolation_level="AUTOCOMMIT")
            self._fast_revision = _PostgresRevisionReader(engine.url.set(drivername="postgresql")
                                                          .render_as_string(hide_password=False))
            # Whoever disposes the engine (shutdown, a test's teardown) closes these connections with it.
            event.listen(engine, "engine_disposed", lambda _engine: self.close())
        else:
            # SQLite: a deferred BEGIN, so reading keys never takes the write lock a worker or the CLI may hold.
            self._reads = read_only_engine(engine)
        keys = ApiKey.__table__
        self._revision = select(KeyRevision.__table__.c.version).where(KeyRevision.__table__.c.id == REVISION_ROW)
        # The revision rides along as a scalar subquery: read in the key's snapshot, never after it, so a
        # revocation committed in between cannot be cached under the newer revision.
        self._load = select(keys.c.id, keys.c.kind, keys.c.key_hash, keys.c.scopes, keys.c.partner_id, keys.c.name,
                            keys.c.revoked_at, keys.c.last_used_at,
                            self._revision.scalar_subquery().label("revision")
                            ).where(keys.c.prefix == bindparam("prefix"))
        self._record_use = (update(keys)
                            .where(keys.c.id == bindparam("key_id"),
                                   or_(keys.c.last_used_at.is_(None), keys.c.last_used_at < bindparam("stale_before")))
                            .values(last_used_at=bindparam("now")))

    def revision(self) -> int | None:
        if self._fast_revision is not None:
            return self._fast_revision()
        with self._reads.connect() as conn:
            return conn.execute(self._revision).scalar()

    def load(self, prefix: str) -> tuple[KeyRecord | None, int | None]:
        with self._reads.connect() as conn:
            row = conn.execute(self._load, {"prefix": prefix}).first()
        if row is None:
            return None, None
        return KeyRecord.of(row), row.revision

    def record_use(self, key_id: uuid.UUID, now: datetime) -> None:
        with self._writes.begin() as conn:  # a real transaction: on SQLite an autocommit write never committed
            conn.execute(self._record_use, {"key_id": key_id, "stale_before": now - LAST_USED_RESOLUTION, "now": now})

    def close(self) -> None:
        """Close the connections the revision reads opened (the engine's pool is its owner's to dispose)."""
        if self._fast_revision is not None:
            self._fast_revision.close()


class _Entry:
    __slots__ = ("record", "revision", "loaded_at", "use_due")

    def __init__(self, record: KeyRecord, revision: int | None, loaded_at: float, use_due: bool):
        self.record = record
        self.revision = revision
        self.loaded_at = loaded_at
        self.use_due = use_due


class KeyCache:
    """Authenticates presented keys against keys cached for `ttl` seconds; a revocation takes effect at once.

    A cached entry is trusted only while it is younger than `ttl` and the revision counter still reads what it
    read when the entry was loaded: a cache hit costs one primary-key lookup, a miss one statement. Only keys
    that exist are cached (by public prefix, hash and principal, never the plaintext): an unknown or malformed
    key is looked up every time, and every check makes one constant-time comparison. last_used_at is written
    off the hot path: at most once per entry, when the loaded value was a minute old or more.
    """

    def __init__(self, source: KeySource, *, ttl: float, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = utcnow, max_entries: int = CACHE_MAX_ENTRIES):
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        self._source = source
        self._ttl = ttl
        self._clock = clock
        self._now = now
        self._max_entries = max_entries
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, presented: str | None) -> Principal | None:
        """The principal of a valid, unrevoked key; None for anything else."""
        parsed = parse_key(presented)
        if parsed is None:
            return None
        kind, prefix = parsed
        entry = self._entries.get(prefix)
        # The age check first: an expired entry is reloaded without reading the revision on its own.
        if entry is None or self._clock() - entry.loaded_at >= self._ttl or entry.revision != self._source.revision():
            entry = self._load(prefix)
        principal = check_presented(entry.record if entry else None, presented, kind)
        if principal is not None and entry.use_due:
            entry.use_due = False
            self._source.record_use(entry.record.id, self._now())
        return principal

    def _load(self, prefix: str) -> _Entry | None:
        loaded_at = self._clock()  # before reading, so an entry never outlives the ttl of what it holds
        record, revision = self._source.load(prefix)
        with self._lock:
            if record is None:
                self._entries.pop(prefix, None)
                return None
            entry = _Entry(record, revision, loaded_at, last_use_due(record.last_used_at, self._now()))
            if len(self._entries) >= self._max_entries and prefix not in self._entries:
                self._entries.clear()  # keys in use come back on their next call; cheaper to keep than an LRU
            self._entries[prefix] = entry
            return entry
