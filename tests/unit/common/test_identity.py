"""The identity token: only what the gateway signed, unexpired, is accepted."""
from __future__ import annotations

import time

import jwt
import pytest

from services.common.identity import InvalidIdentity, Principal, issue_token, verify_token

SECRET = "s" * 40


def test_a_token_round_trips_the_principal_and_request_id():
    p = Principal(key_id="k1", kind="partner", partner_id="p-1", name="acme")
    principal, rid = verify_token(issue_token(p, SECRET, request_id="r-1"), SECRET)
    assert principal == p
    assert rid == "r-1"


def test_a_token_signed_with_another_secret_is_refused():
    token = issue_token(Principal(key_id="k", kind="internal", scopes=frozenset({"admin"})), "o" * 40, request_id=None)
    with pytest.raises(InvalidIdentity):
        verify_token(token, SECRET)


def test_an_expired_token_is_refused():
    now = int(time.time())
    token = jwt.encode({"iss": "crm-gateway", "aud": "crm-services", "iat": now - 100, "exp": now - 30,
                        "sub": "k", "kind": "internal"}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidIdentity):
        verify_token(token, SECRET)


def test_an_unsigned_token_is_refused():
    token = jwt.encode({"iss": "crm-gateway", "aud": "crm-services", "iat": 1, "exp": 2**31, "sub": "k",
                        "kind": "internal", "scopes": ["admin"]}, None, algorithm="none")
    with pytest.raises(InvalidIdentity):
        verify_token(token, SECRET)


def test_scopes_grant_exactly_what_they_name():
    p = Principal(key_id="k", kind="internal", scopes=frozenset({"leads:read", "contacts:*"}))
    assert p.has_scope("leads:read")
    assert not p.has_scope("leads:write")
    assert p.has_scope("contacts:write")
    assert Principal(key_id="a", kind="internal", scopes=frozenset({"admin"})).has_scope("leads:write")
    assert not Principal(key_id="p", kind="partner", partner_id="x").has_scope("leads:read")
