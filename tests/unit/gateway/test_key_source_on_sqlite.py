"""The key cache on the gateway's SQLite database (what `crm run` uses): the migration, last use, revocation."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from crm.registry import SUITE
from services.common.db import make_engine, make_session_factory
from services.gateway import keys
from services.gateway.models import ApiKey


@pytest.fixture
def engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    SUITE.migrate("gateway", url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def _create(engine, *scopes):
    with make_session_factory(engine)() as session:
        key, plaintext = keys.create_key(session, name="app", scopes=scopes)
        session.commit()
    return key.id, plaintext


def _stored(engine) -> ApiKey:
    with make_session_factory(engine)() as session:
        return session.scalar(select(ApiKey))


def test_a_successful_call_records_the_last_use_on_sqlite(engine):
    _key_id, plaintext = _create(engine, "leads:read")
    assert keys.KeyCache(keys.SqlKeySource(engine), ttl=5).authenticate(plaintext) is not None
    assert _stored(engine).last_used_at is not None


def test_a_revocation_reaches_a_warm_cache_on_sqlite_at_once(engine, tmp_path):
    key_id, plaintext = _create(engine, "leads:read")
    # Another process: its own engine on the same file, its own cache (an hour, so only the revision can refuse).
    other_engine = make_engine(str(engine.url))
    try:
        other = keys.KeyCache(keys.SqlKeySource(other_engine), ttl=3600)
        assert other.authenticate(plaintext) is not None
        assert other.authenticate(plaintext) is not None
        with make_session_factory(engine)() as session:
            keys.revoke_key(session, key_id)
            session.commit()
        assert other.authenticate(plaintext) is None
    finally:
        other_engine.dispose()


def test_the_migration_seeds_the_revision_counter_and_revoking_advances_it(engine):
    source = keys.SqlKeySource(engine)
    assert source.revision() == 0
    key_id, _plaintext = _create(engine)
    with make_session_factory(engine)() as session:
        keys.revoke_key(session, key_id)
        keys.revoke_key(session, key_id)  # already revoked: no second bump
        session.commit()
    assert source.revision() == 1
