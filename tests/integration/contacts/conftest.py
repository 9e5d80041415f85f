"""Fixtures for the contacts service on the real PostgreSQL and RabbitMQ."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from services.common.runtime import build_runtime
from services.common.settings import Settings
from services.contacts.models import Base, Contact, InboxEntry, OutboxMessage
from tests.support.auth import identity_headers


@pytest.fixture
def app(service_app):
    return service_app("contacts")


@pytest.fixture
def contacts_settings(app):
    """The app's settings: a worker built from them shares its database and vhost."""
    return app.extensions["crm.settings"]


@pytest.fixture
def runtime(app):
    return app.extensions["crm.runtime"]


@pytest.fixture(params=["postgresql", "sqlite"])
def any_runtime(request):
    """A contacts runtime on a fresh migrated PostgreSQL database, or on SQLite in memory (the same test twice)."""
    if request.param == "postgresql":
        yield request.getfixturevalue("runtime")
        return
    rt = build_runtime(Settings(service="contacts", database_url="sqlite:///:memory:"), OutboxMessage, InboxEntry)
    Base.metadata.create_all(rt.engine)
    yield rt
    rt.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def rw_headers():
    return identity_headers("contacts:read", "contacts:write")


class Store:
    """Reads what the service wrote, to assert on state rather than on responses alone."""

    def __init__(self, runtime):
        self.runtime = runtime

    def contacts(self) -> list[Contact]:
        with self.runtime.session_factory() as s:
            return list(s.scalars(select(Contact).order_by(Contact.seq)))

    def contact_count(self) -> int:
        with self.runtime.session_factory() as s:
            return s.scalar(select(func.count()).select_from(Contact))

    def events(self, event_type: str | None = None) -> list[dict]:
        """The CloudEvents in the outbox, oldest first."""
        stmt = select(OutboxMessage).order_by(OutboxMessage.seq)
        if event_type:
            stmt = stmt.where(OutboxMessage.event_type == event_type)
        with self.runtime.session_factory() as s:
            return [json.loads(row.payload) for row in s.scalars(stmt)]


@pytest.fixture
def store(runtime):
    return Store(runtime)
