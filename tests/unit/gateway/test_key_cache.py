"""The gateway's key cache: seconds of reuse, revocation at once, nothing cached that helps an attacker."""
from __future__ import annotations

import pytest

from services.gateway import keys

from .fakes import FakeClock, FakeKeySource, FakeWallClock

TTL = 5.0


@pytest.fixture
def source():
    return FakeKeySource()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def cache(source, clock):
    return keys.KeyCache(source, ttl=TTL, clock=clock, now=FakeWallClock())


def test_a_warm_key_costs_one_revision_read_and_no_reload(source, cache, clock):
    _key, plaintext = source.create("leads:read")
    assert cache.authenticate(plaintext) is not None
    assert (source.loads, source.revision_reads) == (1, 0), "a miss loads the key and its revision in one read"
    for _ in range(10):
        clock.advance(0.4)
        assert cache.authenticate(plaintext) is not None
    assert (source.loads, source.revision_reads) == (1, 10)


def test_an_entry_is_reloaded_once_it_is_ttl_seconds_old(source, cache, clock):
    _key, plaintext = source.create()
    cache.authenticate(plaintext)
    clock.advance(TTL - 0.001)
    cache.authenticate(plaintext)
    assert source.loads == 1
    clock.advance(0.001)
    cache.authenticate(plaintext)
    assert source.loads == 2
    reads = source.revision_reads
    clock.advance(TTL)
    cache.authenticate(plaintext)
    assert source.loads == 3 and source.revision_reads == reads, "an expired entry reloads without a separate read"


def test_a_revocation_is_refused_on_the_next_call_while_the_entry_is_fresh(source, cache, clock):
    key, plaintext = source.create()
    other, other_plaintext = source.create()
    assert cache.authenticate(plaintext) is not None
    assert cache.authenticate(other_plaintext) is not None
    source.revoke(key, FakeWallClock()())  # by another process: only the database knows
    clock.advance(0.01)
    assert cache.authenticate(plaintext) is None
    # Any revocation reloads every entry once; the other key still works.
    assert cache.authenticate(other_plaintext) is not None
    assert source.loads == 4


def test_a_changed_scope_shows_after_the_ttl_at_the_latest(source, cache, clock):
    key, plaintext = source.create("leads:read")
    cache.authenticate(plaintext)
    key.scopes = ["leads:read", "leads:write"]  # no API changes scopes; an operator's SQL might
    assert "leads:write" not in cache.authenticate(plaintext).scopes
    clock.advance(TTL)
    assert "leads:write" in cache.authenticate(plaintext).scopes


def test_an_unknown_key_is_never_cached_and_looked_up_every_time(source, cache):
    unknown = keys.generate_key("internal")[0]
    for _ in range(3):
        assert cache.authenticate(unknown) is None
    assert source.loads == 3
    assert len(cache) == 0
    # Created after the failed attempts, it works at once: no negative entry stands in the way.
    row, plaintext = source.create()
    row.prefix = keys.parse_key(unknown)[1]
    row.key_hash = keys.hash_key(unknown)
    assert cache.authenticate(unknown) is not None


def test_the_cache_holds_hashes_and_principals_never_a_key(source, cache):
    _key, plaintext = source.create("contacts:read")
    cache.authenticate(plaintext)
    held = repr([(prefix, vars(entry.record)) for prefix, entry in cache._entries.items()])
    assert plaintext not in held
    assert plaintext.split("_", 2)[2] not in held
    assert keys.hash_key(plaintext) in held


def test_the_cache_is_bounded(source, clock):
    cache = keys.KeyCache(source, ttl=TTL, clock=clock, now=FakeWallClock(), max_entries=3)
    plaintexts = [source.create()[1] for _ in range(7)]
    for plaintext in plaintexts:
        assert cache.authenticate(plaintext) is not None
        assert len(cache) <= 3


def test_the_ttl_must_be_positive(source):
    with pytest.raises(ValueError):
        keys.KeyCache(source, ttl=0)
