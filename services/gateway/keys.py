"""API-key use cases: create, authenticate, list and revoke. The only code that changes key state.

A key reads `crm_<kind>_<random>`; `<random>` is 32 bytes from `secrets` (256 bits), URL-safe base64.
Only the first 12 characters of `<random>` (the public prefix, indexed) and the SHA-256 of the whole
key are stored, so a leaked table does not leak usable keys. Every function works inside the caller's
session; the caller commits (a unit of work in the app, one transaction in the CLI).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select

from services.common.db import utcnow
from services.common.identity import Principal
from services.common.pagination import paginate
from services.common.problems import NotFound, Unprocessable

from .models import ApiKey

KINDS = ("internal", "partner")
PREFIX_LENGTH = 12
RANDOM_BYTES = 32
ADMIN_SCOPE = "admin"
SCOPE_PATTERN = re.compile(r"^[a-z]+:(read|write|\*)$")
NAME_MAX = 100
# Writing last_used_at on every request would turn each call into a write; a minute is precise enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)
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


def validate_scopes(scopes: Iterable[str]) -> list[str]:
    """Sorted, de-duplicated scopes; raises Unprocessable naming every malformed one."""
    cleaned = sorted({s.strip() for s in scopes if s and s.strip()})
    bad = [s for s in cleaned if s != ADMIN_SCOPE and not SCOPE_PATTERN.match(s)]
    if bad:
        raise Unprocessable(
            f"Malformed scope(s): {', '.join(bad)}. Use `<service>:read`, `<service>:write`, `<service>:*` or `admin`.",
            errors={"scopes": [f"Malformed scope {s!r}." for s in bad]})
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


def principal_of(key: ApiKey) -> Principal:
    """The identity a key stands for."""
    return Principal(key_id=str(key.id), kind=key.kind, scopes=frozenset(key.scopes or ()),
                     partner_id=str(key.partner_id) if key.partner_id else None, name=key.name)


# -- use cases ------------------------------------------------------------------------------------------

def create_key(session, *, name: str, scopes: Iterable[str] = (), partner_id=None) -> tuple[ApiKey, str]:
    """Create a key; a partner key when `partner_id` is given (no scopes), else an internal one.

    Returns the row and the plaintext, which is never stored and cannot be shown again.
    """
    name = validate_name(name)
    scopes = list(scopes or ())
    if partner_id is not None:
        if scopes:
            raise Unprocessable("A partner key carries no scopes; it may call only the partner portal.",
                                errors={"scopes": ["Must be empty for a partner key."]})
        kind, partner, scope_list = "partner", _partner_uuid(partner_id), []
    else:
        kind, partner, scope_list = "internal", None, validate_scopes(scopes)
    plaintext, prefix, digest = generate_key(kind)
    key = ApiKey(name=name, kind=kind, prefix=prefix, key_hash=digest, scopes=scope_list, partner_id=partner)
    session.add(key)
    session.flush()
    return key, plaintext


def authenticate(session, presented: str | None, *, now: datetime | None = None) -> Principal | None:
    """The principal of a valid, unrevoked key; None for anything else."""
    parsed = parse_key(presented)
    if parsed is None:
        return None
    kind, prefix = parsed
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None:
        key_matches(_DECOY_HASH, presented)
        return None
    if not key_matches(key.key_hash, presented) or key.kind != kind or key.revoked_at is not None:
        return None
    now = now or utcnow()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        key.last_used_at = now
        session.flush()
    return principal_of(key)


def list_keys(session, *, limit: int | None = None, cursor: str | None = None) -> dict:
    """Keys newest first as {"items", "next_cursor"}; every key when `limit` is None."""
    stmt = select(ApiKey)
    if limit is None:
        return {"items": list(session.scalars(stmt.order_by(ApiKey.seq.desc()))), "next_cursor": None}
    return paginate(session, stmt, ApiKey.seq, limit=limit, cursor=cursor)


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
        session.flush()
    return key


def ensure_admin_key(session) -> str | None:
    """On first start (no key at all), create an `admin` key named "admin" and return it; else None."""
    if session.scalar(select(ApiKey.seq).limit(1)) is not None:
        return None
    _key, plaintext = create_key(session, name="admin", scopes=[ADMIN_SCOPE])
    return plaintext
