"""Fixtures of the kit's unit tests."""
from __future__ import annotations

import pytest

from tests.support.messaging_tables import sqlite_session_factory


@pytest.fixture
def factory(tmp_path):
    """A session factory on a SQLite file of this test's own with only the outbox and inbox tables."""
    session_factory, engine = sqlite_session_factory(tmp_path / "messaging.db")
    yield session_factory
    engine.dispose()
