"""API keys: unguessable, typed, stored only as prefix + hash, checked in constant time."""
from __future__ import annotations

import hashlib
import hmac
import math
import uuid
from datetime import timedelta

import pytest

from services.common.problems import Unprocessable
from services.gateway import keys
from services.gateway.models import ApiKey

from .fakes import FakeClock, FakeKeySource, FakeSession, FakeWallClock


def _random_part(plaintext: str) -> str:
    return plaintext.split("_", 2)[2]


def test_a_key_is_typed_by_kind_and_carries_at_least_128_bits_of_randomness():
    for kind in ("internal", "partner"):
        plaintext, prefix, _ = keys.generate_key(kind)
        assert plaintext.startswith(f"crm_{kind}_")
        random_part = plaintext[len(f"crm_{kind}_"):]
        # URL-safe base64 carries 6 bits per character.
        assert len(random_part) * 6 >= 128
        assert prefix == random_part[:12]


def test_keys_never_repeat_and_their_characters_look_uniform():
    minted = [keys.generate_key("internal")[0] for _ in range(2000)]
    assert len(set(minted)) == len(minted)
    prefixes = {_random_part(k)[:12] for k in minted}
    assert len(prefixes) == len(minted)
    alphabet = {c for k in minted for c in _random_part(k)}
    assert len(alphabet) == 64  # every URL-safe base64 symbol shows up
    entropy_per_char = math.log2(len(alphabet))
    assert entropy_per_char * len(_random_part(minted[0])) >= 128


def test_the_stored_hash_is_the_sha256_of_the_whole_key():
    plaintext, _, digest = keys.generate_key("internal")
    assert digest == hashlib.sha256(plaintext.encode()).hexdigest()
    assert keys.hash_key(plaintext) == digest


def test_creating_a_key_stores_only_its_prefix_and_hash_never_the_key():
    session = FakeSession()
    key, plaintext = keys.create_key(session, name="billing", scopes=["contacts:read", "leads:*"])
    stored = [getattr(key, c.key) for c in ApiKey.__table__.columns]
    assert plaintext not in [str(v) for v in stored]
    assert _random_part(plaintext) not in [str(v) for v in stored]
    assert key.key_hash == keys.hash_key(plaintext)
    assert key.prefix == _random_part(plaintext)[:12]
    assert key.kind == "internal" and key.scopes == ["contacts:read", "leads:*"]


def test_a_partner_key_is_bound_to_its_partner_and_carries_no_scopes():
    partner = uuid.uuid4()
    key, plaintext = keys.create_key(FakeSession(), name="acme", partner_id=str(partner))
    assert plaintext.startswith("crm_partner_")
    assert key.kind == "partner" and key.partner_id == partner and key.scopes == []
    with pytest.raises(Unprocessable):
        keys.create_key(FakeSession(), name="acme", partner_id=partner, scopes=["leads:read"])
    with pytest.raises(Unprocessable):
        keys.create_key(FakeSession(), name="acme", partner_id="not-a-uuid")


@pytest.mark.parametrize("scope", ["admin", "contacts:read", "leads:write", "loyalty:*"])
def test_well_formed_scopes_are_accepted(scope):
    assert keys.validate_scopes([scope]) == [scope]


@pytest.mark.parametrize("scope", ["Admin", "leads", "leads:delete", "leads:read:x", "partner-portal:read",
                                   ":read", "leads:*x"])
def test_malformed_scopes_are_refused_by_name(scope):
    with pytest.raises(Unprocessable) as err:
        keys.validate_scopes(["contacts:read", scope])
    assert scope in err.value.detail
    assert "scopes" in err.value.extra["errors"]


def test_scopes_are_deduplicated_and_sorted():
    assert keys.validate_scopes(["leads:read", "contacts:*", "leads:read"]) == ["contacts:*", "leads:read"]


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_a_key_name_must_be_1_to_100_characters(name):
    with pytest.raises(Unprocessable):
        keys.create_key(FakeSession(), name=name)


def _cache(source, **kw):
    return keys.KeyCache(source, ttl=5.0, clock=kw.pop("clock", FakeClock()), now=kw.pop("now", FakeWallClock()), **kw)


class NoLookups:
    """A KeySource that fails the test when asked anything."""

    def revision(self):
        raise AssertionError("looked up the revision")

    def load(self, prefix):
        raise AssertionError("looked up a key")

    def record_use(self, key_id, now):
        raise AssertionError("recorded a use")


@pytest.mark.parametrize("presented", [None, "", "crm_internal_short", "Bearer crm_internal_xxxxxxxxxxxxxxxxx",
                                       "crm_robot_aaaaaaaaaaaaaaaaaaaa", "x" * 500])
def test_strings_not_shaped_like_a_key_are_rejected_before_any_lookup(presented):
    assert _cache(NoLookups()).authenticate(presented) is None


def test_authentication_compares_hashes_in_constant_time_even_for_an_unknown_prefix(monkeypatch):
    calls = []
    real_compare = hmac.compare_digest

    def recording_compare(a, b):
        calls.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(keys.hmac, "compare_digest", recording_compare)
    source = FakeKeySource()
    key, plaintext = source.create("leads:read")
    cache = _cache(source)

    assert cache.authenticate(plaintext) is not None
    assert calls[-1] == (key.key_hash.encode(), keys.hash_key(plaintext).encode())
    calls.clear()
    assert cache.authenticate(plaintext) is not None, "a cache hit"
    assert len(calls) == 1, "a cached key is still compared, in constant time"

    unknown = keys.generate_key("internal")[0]
    calls.clear()
    assert cache.authenticate(unknown) is None
    assert len(calls) == 1, "an unknown prefix still costs one hash comparison"


def test_a_key_with_a_known_prefix_but_wrong_secret_is_refused():
    source = FakeKeySource()
    _key, plaintext = source.create()
    tampered = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")
    cache = _cache(source)
    assert cache.authenticate(tampered) is None
    assert cache.authenticate(plaintext) is not None
    assert cache.authenticate(tampered) is None, "a warm entry does not let a wrong secret through"


def test_a_key_presented_as_another_kind_is_refused():
    source = FakeKeySource()
    _key, plaintext = source.create(partner_id=uuid.uuid4())
    assert _cache(source).authenticate(plaintext.replace("crm_partner_", "crm_internal_", 1)) is None


def test_a_revoked_key_no_longer_authenticates():
    source = FakeKeySource()
    key, plaintext = source.create()
    source.revoke(key, FakeWallClock()())
    assert _cache(source).authenticate(plaintext) is None


def test_authentication_yields_the_principal_of_the_key():
    source = FakeKeySource()
    partner = uuid.uuid4()
    key, plaintext = source.create(partner_id=partner, name="acme")
    principal = _cache(source).authenticate(plaintext)
    assert principal.key_id == str(key.id)
    assert principal.kind == "partner" and principal.partner_id == str(partner)
    assert principal.scopes == frozenset() and principal.name == "acme"


def test_last_used_is_recorded_at_most_once_a_minute_and_never_on_a_cache_hit():
    source, clock, wall = FakeKeySource(), FakeClock(), FakeWallClock()
    key, plaintext = source.create()
    cache = _cache(source, clock=clock, now=wall)
    t0 = wall()
    cache.authenticate(plaintext)
    assert key.last_used_at == t0 and source.uses == [t0]
    for _ in range(20):  # hits, then reloads every 5 s for 30 s: the stored time is recent, nothing is written
        clock.advance(1.5)
        wall.advance(1.5)
        cache.authenticate(plaintext)
    assert source.uses == [t0]
    clock.advance(31)
    wall.advance(31)  # 61 s after the first use: the next reload finds it stale and records this use
    cache.authenticate(plaintext)
    assert key.last_used_at == t0 + timedelta(seconds=61)
    assert len(source.uses) == 2


def test_a_failed_attempt_does_not_count_as_a_use():
    source = FakeKeySource()
    key, plaintext = source.create()
    _cache(source).authenticate(plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B"))
    assert key.last_used_at is None and source.uses == []


def test_the_admin_key_is_created_only_when_there_is_no_key_at_all():
    session = FakeSession()
    first = keys.ensure_admin_key(session)
    assert first and first.startswith("crm_internal_")
    assert session.rows[0].scopes == ["admin"] and session.rows[0].name == "admin"
    assert keys.ensure_admin_key(session) is None
    assert len(session.rows) == 1
