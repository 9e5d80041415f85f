"""The gateway's signed identity token and the `@requires(scope)` guard every service uses."""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import jwt
from flask import abort, g

ISSUER = "crm-gateway"
AUDIENCE = "crm-services"
ALGORITHM = "HS256"
HEADER = "X-CRM-Identity"
# Reads the plugin listing of any service (what is loaded, what failed to load); `admin` holds it too. It
# belongs to no service, so no service's `<svc>:*` grants it (`leads:*` does not).
PLUGINS_READ = "plugins:read"


@dataclass(frozen=True)
class Principal:
    """Who is calling: an internal app with scopes, or a partner bound to one partner id."""

    key_id: str
    kind: str  # "internal" | "partner"
    scopes: frozenset[str] = field(default_factory=frozenset)
    partner_id: str | None = None
    name: str | None = None

    def has_scope(self, scope: str) -> bool:
        """True when the principal holds `scope`, its service-wide `<svc>:*`, or `admin`."""
        if self.kind != "internal":
            return False
        service = scope.split(":", 1)[0]
        return bool({scope, f"{service}:*", "admin"} & self.scopes)


class InvalidIdentity(Exception):
    """The identity token is missing, forged, expired or malformed."""


def issue_token(principal: Principal, secret: str, *, request_id: str | None, ttl: float = 60.0) -> str:
    """Sign a short-lived identity token for an upstream call."""
    now = int(time.time())
    claims = {
        "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now - 5, "exp": now + int(ttl),
        "sub": principal.key_id, "kind": principal.kind, "scopes": sorted(principal.scopes),
        "partner_id": principal.partner_id, "name": principal.name, "rid": request_id,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(token: str, secret: str) -> tuple[Principal, str | None]:
    """Check signature, issuer, audience and expiry; returns the principal and the request id."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                            options={"require": ["exp", "iat", "sub", "iss", "aud"]}, leeway=5)
    except jwt.PyJWTError as exc:
        raise InvalidIdentity(str(exc)) from None
    kind = claims.get("kind")
    if kind not in ("internal", "partner"):
        raise InvalidIdentity("unknown principal kind")
    if kind == "partner" and not claims.get("partner_id"):
        raise InvalidIdentity("partner token without partner id")
    principal = Principal(key_id=claims["sub"], kind=kind, scopes=frozenset(claims.get("scopes") or ()),
                          partner_id=claims.get("partner_id"), name=claims.get("name"))
    return principal, claims.get("rid")


def current_principal() -> Principal:
    """The verified caller of the current request."""
    return g.principal


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
