"""The gateway's signed identity token and the `@requires(scope)` guard every service uses.

Tokens are signed with Ed25519 (JWT `EdDSA`): the gateway alone holds the private key, services hold only the
public key, so no service (and no plugin loaded in one) can mint a token. Each token names the one upstream it
is for as its audience (`crm-<service>`), carries a `jti`, and lives at most 30 seconds.

Signing and verifying an Ed25519 token costs ~0.1 ms of CPU each, on every request. So the gateway reuses a
token for the same principal and upstream for half its lifetime (`TokenSigner`), and a service remembers the
tokens it verified until they expire (`TokenVerifier`): a token is the same bytes every time, and re-checking
identical bytes cannot change the answer. The request id travels in `X-Request-ID`, not in the token.
"""
from __future__ import annotations

import functools
import threading
import time
import uuid
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from flask import abort, g

ISSUER = "crm-gateway"
ALGORITHM = "EdDSA"
HEADER = "X-CRM-Identity"
ADMIN_SCOPE = "admin"
# The actions `<svc>:*` stands for; privileged actions (e.g. `loyalty:admin`) must be granted by name.
WILDCARD_ACTIONS = ("read", "write")
MAX_TOKEN_TTL = 30.0  # seconds; the settings refuse a longer CRM_IDENTITY_TOKEN_TTL
LEEWAY = 5  # seconds of clock difference tolerated between the gateway and a service
# Reads the plugin listing of any service (what is loaded, what failed to load); `admin` holds it too. It
# belongs to no service, so no service's `<svc>:*` grants it (`leads:*` does not).
PLUGINS_READ = "plugins:read"


def audience(service: str) -> str:
    """The audience claim of tokens meant for `service`."""
    return f"crm-{service}"


@dataclass(frozen=True)
class Principal:
    """Who is calling: an internal app with scopes, or a partner bound to one partner id."""

    key_id: str
    kind: str  # "internal" | "partner"
    scopes: frozenset[str] = field(default_factory=frozenset)
    partner_id: str | None = None
    name: str | None = None

    def has_scope(self, scope: str) -> bool:
        """True when the principal holds `scope`, or `admin`, or `<svc>:*` for a `<svc>:read|write` scope.

        `<svc>:*` never grants a privileged action such as `loyalty:admin`, and `admin:*` grants nothing:
        only the exact `admin` scope is the super scope.
        """
        if self.kind != "internal":
            return False
        if scope in self.scopes or ADMIN_SCOPE in self.scopes:
            return True
        service, _, action = scope.partition(":")
        return action in WILDCARD_ACTIONS and f"{service}:*" in self.scopes


class InvalidIdentity(Exception):
    """The identity token is missing, forged, expired or malformed."""


class IdentityKeyError(ValueError):
    """A key is not an Ed25519 key in PEM form."""


def generate_keypair() -> tuple[str, str]:
    """A new Ed25519 key pair as (private PEM, public PEM)."""
    private = Ed25519PrivateKey.generate()
    return (private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode(),
            public_pem(private))


def public_pem(private: Ed25519PrivateKey) -> str:
    return private.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_private_key(pem: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise IdentityKeyError(f"not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityKeyError(f"an Ed25519 key is needed, got {type(key).__name__}")
    return key


def load_public_key(pem: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise IdentityKeyError(f"not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise IdentityKeyError(f"an Ed25519 key is needed, got {type(key).__name__}")
    return key


def issue_token(principal: Principal, private_key: Ed25519PrivateKey | str, *, audiences: str | list[str],
                ttl: float = MAX_TOKEN_TTL, now: float | None = None) -> str:
    """Sign an identity token for `principal`, meant for `audiences` (`audience(service)`), valid `ttl` s."""
    if isinstance(private_key, str):
        private_key = load_private_key(private_key)
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": ISSUER, "aud": audiences, "iat": issued, "nbf": issued - LEEWAY, "exp": issued + int(ttl),
        "jti": uuid.uuid4().hex,
        "sub": principal.key_id, "kind": principal.kind, "scopes": sorted(principal.scopes),
        "partner_id": principal.partner_id, "name": principal.name,
    }
    return jwt.encode(claims, private_key, algorithm=ALGORITHM)


def verify_token(token: str, public_key: Ed25519PublicKey | str, *, service: str) -> tuple[Principal, int]:
    """Check signature, issuer, audience (`service`) and lifetime; the principal and the expiry (epoch s)."""
    if isinstance(public_key, str):
        public_key = load_public_key(public_key)
    try:
        claims = jwt.decode(token, public_key, algorithms=[ALGORITHM], audience=audience(service), issuer=ISSUER,
                            options={"require": ["exp", "iat", "nbf", "sub", "iss", "aud", "jti"]}, leeway=LEEWAY)
    except jwt.PyJWTError as exc:
        raise InvalidIdentity(str(exc)) from None
    kind = claims.get("kind")
    if kind not in ("internal", "partner"):
        raise InvalidIdentity("unknown principal kind")
    if kind == "partner" and not claims.get("partner_id"):
        raise InvalidIdentity("partner token without partner id")
    principal = Principal(key_id=claims["sub"], kind=kind, scopes=frozenset(claims.get("scopes") or ()),
                          partner_id=claims.get("partner_id"), name=claims.get("name"))
    return principal, int(claims["exp"])


class TokenSigner:
    """The gateway's tokens: one per principal and upstream, reused for half its lifetime, then replaced.

    A reused token is the same statement as a fresh one (same principal, scopes and audience), and every token
    still expires within `ttl`; a revoked key never reaches the signer (the key cache refuses it first).
    """

    MAX_ENTRIES = 10_000

    def __init__(self, private_key: Ed25519PrivateKey | str, *, ttl: float = MAX_TOKEN_TTL,
                 clock=time.time):
        if not 0 < ttl <= MAX_TOKEN_TTL:
            raise ValueError(f"ttl must be in (0, {MAX_TOKEN_TTL:g}] seconds")
        self._key = load_private_key(private_key) if isinstance(private_key, str) else private_key
        self.ttl = ttl
        self._reuse_for = ttl / 2
        self._clock = clock
        self._tokens: dict[tuple[Principal, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def token_for(self, principal: Principal, upstream: str) -> str:
        cache_key = (principal, upstream)
        now = self._clock()
        cached = self._tokens.get(cache_key)
        if cached is not None and now - cached[1] < self._reuse_for:
            return cached[0]
        token = issue_token(principal, self._key, audiences=audience(upstream), ttl=self.ttl, now=now)
        with self._lock:
            if len(self._tokens) >= self.MAX_ENTRIES:
                self._tokens.clear()  # principals in use come back at their next call
            self._tokens[cache_key] = (token, now)
        return token


class TokenVerifier:
    """A service's check of identity tokens; a token verified once is trusted again, unchanged, until it expires."""

    MAX_ENTRIES = 10_000

    def __init__(self, public_key: Ed25519PublicKey | str, *, service: str, clock=time.time):
        self._key = load_public_key(public_key) if isinstance(public_key, str) else public_key
        self.service = service
        self._clock = clock
        self._verified: dict[str, tuple[Principal, int]] = {}
        self._lock = threading.Lock()

    def verify(self, token: str) -> Principal:
        """The token's principal; InvalidIdentity when it is forged, expired, not for this service or malformed."""
        hit = self._verified.get(token)
        if hit is not None and self._clock() < hit[1] + LEEWAY:
            return hit[0]
        principal, expires = verify_token(token, self._key, service=self.service)
        with self._lock:
            if len(self._verified) >= self.MAX_ENTRIES:
                now = self._clock()
                self._verified = {t: v for t, v in self._verified.items() if now < v[1] + LEEWAY}
                if len(self._verified) >= self.MAX_ENTRIES:
                    self._verified.clear()
            self._verified[token] = (principal, expires)
        return principal


def current_principal() -> Principal:
    """The verified caller of the current request."""
    return g.principal


def record_or_receipt(read_scope: str, record, **receipt):
    """`record` for a caller holding `read_scope`; anyone else gets only `receipt` (the ids of what it wrote).

    A key that may write a service but not read it learns nothing by writing that it could not read: not the
    record, not the fields the server computed, not another record its write ran into (issue 7 §2).
    """
    return record if current_principal().has_scope(read_scope) else receipt


def requires(scope: str | None = None, *, kind: str = "internal"):
    """Allow the view only to a principal of `kind` holding `scope` (403 otherwise)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            principal = getattr(g, "principal", None)
            if principal is None:
                abort(401)
            if principal.kind != kind:
                abort(403, description=f"this endpoint is for {kind} principals")
            if scope and not principal.has_scope(scope):
                abort(403, description=f"the API key lacks the scope {scope!r}")
            return view(*args, **kwargs)

        wrapper._crm_scope = scope  # read by the OpenAPI/route listing tests
        return wrapper

    return decorate
