"""The identity token: only what the gateway signed with its private key, for this service, unexpired."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from services.common.identity import (
    MAX_TOKEN_TTL, IdentityKeyError, InvalidIdentity, Principal, TokenSigner, TokenVerifier, audience,
    generate_keypair, issue_token, load_private_key, load_public_key, verify_token,
)

PRIVATE, PUBLIC = generate_keypair()
OTHER_PRIVATE, _OTHER_PUBLIC = generate_keypair()
ADMIN = Principal(key_id="k", kind="internal", scopes=frozenset({"admin"}))


def _claims(**changes) -> dict:
    now = int(time.time())
    claims = {"iss": "crm-gateway", "aud": "crm-leads", "iat": now, "nbf": now - 5, "exp": now + 30,
              "jti": "j-1", "sub": "k", "kind": "internal", "scopes": ["admin"]}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_a_token_round_trips_the_principal_and_names_one_service_a_jti_and_a_short_life():
    p = Principal(key_id="k1", kind="partner", partner_id="p-1", name="acme")
    token = issue_token(p, PRIVATE, audiences=audience("partners"))
    principal, expires = verify_token(token, PUBLIC, service="partners")
    assert principal == p
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == "crm-partners" and claims["jti"] and expires == claims["exp"]
    assert claims["exp"] - claims["iat"] <= MAX_TOKEN_TTL
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"


def test_a_token_for_another_service_is_refused():
    token = issue_token(ADMIN, PRIVATE, audiences=audience("contacts"))
    with pytest.raises(InvalidIdentity):
        verify_token(token, PUBLIC, service="leads")


def test_a_token_signed_with_another_key_is_refused():
    with pytest.raises(InvalidIdentity):
        verify_token(issue_token(ADMIN, OTHER_PRIVATE, audiences="crm-leads"), PUBLIC, service="leads")


def test_a_token_forged_with_the_public_key_as_an_hmac_secret_is_refused():
    """The classic algorithm confusion: whoever holds the public key signs HS256 with it as the secret."""
    # PyJWT itself refuses to use a PEM key as an HMAC secret, so the forgery is built by hand.
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(_claims()).encode())
    signature = hmac.new(PUBLIC.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{head}.{body}.{b64(signature)}"
    with pytest.raises(InvalidIdentity):
        verify_token(forged, PUBLIC, service="leads")


@pytest.mark.parametrize("change", [
    {"exp": int(time.time()) - 30},  # expired
    {"jti": None},  # no jti
    {"aud": None},  # no audience
    {"iss": "someone-else"},
    {"kind": "root"},
])
def test_tokens_missing_or_breaking_a_claim_are_refused(change):
    token = jwt.encode(_claims(**change), load_private_key(PRIVATE), algorithm="EdDSA")
    with pytest.raises(InvalidIdentity):
        verify_token(token, PUBLIC, service="leads")


def test_an_unsigned_token_is_refused():
    token = jwt.encode(_claims(), None, algorithm="none")
    with pytest.raises(InvalidIdentity):
        verify_token(token, PUBLIC, service="leads")


def test_keys_must_be_ed25519_pem():
    with pytest.raises(IdentityKeyError):
        load_private_key("not a key")
    with pytest.raises(IdentityKeyError):
        load_public_key(PRIVATE)  # the private key is not a public key


def test_the_signer_reuses_a_token_per_principal_and_upstream_for_half_its_life():
    clock = [1_000_000.0]
    signer = TokenSigner(PRIVATE, ttl=30, clock=lambda: clock[0])
    first = signer.token_for(ADMIN, "leads")
    assert signer.token_for(ADMIN, "leads") == first
    assert signer.token_for(ADMIN, "contacts") != first, "one token per upstream"
    other = Principal(key_id="k2", kind="internal", scopes=frozenset({"leads:read"}))
    assert signer.token_for(other, "leads") != first, "one token per principal"
    clock[0] += 14.9
    assert signer.token_for(ADMIN, "leads") == first
    clock[0] += 0.2
    renewed = signer.token_for(ADMIN, "leads")
    assert renewed != first
    claims = jwt.decode(renewed, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 30


def test_the_signer_refuses_a_lifetime_over_30_seconds():
    with pytest.raises(ValueError):
        TokenSigner(PRIVATE, ttl=31)


def test_the_verifier_trusts_a_verified_token_until_it_expires_and_never_a_bad_one(monkeypatch):
    from services.common import identity

    checks = []
    real = identity.verify_token
    monkeypatch.setattr(identity, "verify_token", lambda *a, **kw: checks.append(a[0]) or real(*a, **kw))
    clock = [time.time()]
    verifier = TokenVerifier(PUBLIC, service="leads", clock=lambda: clock[0])
    token = issue_token(ADMIN, PRIVATE, audiences="crm-leads", ttl=10, now=clock[0])
    assert verifier.verify(token) == ADMIN
    assert verifier.verify(token) == ADMIN
    assert checks == [token], "the second call was answered from the cache"
    with pytest.raises(InvalidIdentity):
        verifier.verify(token[:-4] + "AAAA")  # a tampered copy is a different token: checked, and refused
    clock[0] += 10 + 5 + 1  # past exp and the leeway: the cached answer no longer counts
    verifier.verify(token)
    assert checks[-1] == token and len(checks) == 3


def test_scopes_grant_exactly_what_they_name():
    p = Principal(key_id="k", kind="internal", scopes=frozenset({"leads:read", "contacts:*"}))
    assert p.has_scope("leads:read")
    assert not p.has_scope("leads:write")
    assert p.has_scope("contacts:write")
    assert Principal(key_id="a", kind="internal", scopes=frozenset({"admin"})).has_scope("leads:write")
    assert not Principal(key_id="p", kind="partner", partner_id="x").has_scope("leads:read")
