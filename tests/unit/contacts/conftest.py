"""The contacts service's unit tests on SQLite in memory: one runtime per test, its tables created from the models."""
from __future__ import annotations

import pytest

from services.common.runtime import build_runtime
from services.common.settings import Settings
from services.contacts.models import Base, InboxEntry, OutboxMessage


@pytest.fixture
def runtime():
    rt = build_runtime(Settings(service="contacts", database_url="sqlite:///:memory:"), OutboxMessage, InboxEntry)
    Base.metadata.create_all(rt.engine)
    yield rt
    rt.engine.dispose()
