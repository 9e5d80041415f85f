"""Signed identity headers for calling a service app directly in tests, as the gateway would."""
from __future__ import annotations

from crm.registry import SUITE
from services.common.identity import HEADER, Principal, audience, issue_token
from tests.support.infra import IDENTITY_PRIVATE_KEY

# A test token is good for every service, so one set of headers serves whichever app a test calls; the gateway
# names exactly one upstream in each token it signs.
EVERY_SERVICE = [audience(e.name) for e in SUITE.upstreams]


def identity_headers(*scopes: str, kind: str = "internal", partner_id: str | None = None,
                     key_id: str = "test-key", private_key: str = IDENTITY_PRIVATE_KEY,
                     ttl: float = 3600) -> dict[str, str]:
    """Headers carrying a valid identity token for the given principal.

    Tests build these at import time and a full run takes minutes, so the token lives an hour here; the
    gateway's 30-second lifetime is covered by the identity unit tests.
    """
    principal = Principal(key_id=key_id, kind=kind, scopes=frozenset(scopes), partner_id=partner_id, name="test")
    return {HEADER: issue_token(principal, private_key, audiences=EVERY_SERVICE, ttl=ttl)}
