"""Signed identity headers for calling a service app directly in tests, as the gateway would."""
from __future__ import annotations

from services.common.identity import HEADER, Principal, issue_token
from tests.support.infra import IDENTITY_SECRET


def identity_headers(*scopes: str, kind: str = "internal", partner_id: str | None = None,
                     key_id: str = "test-key", secret: str = IDENTITY_SECRET, ttl: float = 3600) -> dict[str, str]:
    """Headers carrying a valid identity token for the given principal.

    Tests build these at import time and a full run takes minutes, so the token lives an hour here; the
    60-second production lifetime is covered by the identity unit tests.
    """
    principal = Principal(key_id=key_id, kind=kind, scopes=frozenset(scopes), partner_id=partner_id, name="test")
    return {HEADER: issue_token(principal, secret, request_id=None, ttl=ttl)}
