"""A gateway app on its own migrated PostgreSQL database, in front of real HTTP upstreams."""
from __future__ import annotations

import pytest

from crm.registry import SUITE
from services.gateway import keys
from services.gateway.app import create_app

from .upstream import EchoUpstream


@pytest.fixture
def gateway_database(make_database):
    url = make_database("gateway")
    SUITE.migrate("gateway", url)
    return url


@pytest.fixture
def upstream():
    with EchoUpstream() as server:
        yield server


@pytest.fixture
def gateway_settings(make_settings, gateway_database, upstream):
    """Contacts and leads on the echo upstream; loyalty and partners too, so every route has a live server."""
    def make(**env):
        base = {f"CRM_{svc.upper()}_URL": upstream.url for svc in ("contacts", "leads", "loyalty", "partners")}
        base["CRM_UPSTREAM_TIMEOUT"] = "1"
        base.update(env)
        return make_settings("gateway", gateway_database, **base)

    return make


@pytest.fixture
def gateway(gateway_settings):
    app = create_app(gateway_settings())
    yield app
    app.extensions["crm.runtime"].engine.dispose()


@pytest.fixture
def client(gateway):
    return gateway.test_client()


@pytest.fixture
def make_key(gateway):
    """Factory: create a key directly through the use case; returns its plaintext."""
    runtime = gateway.extensions["crm.runtime"]

    def make(*scopes: str, partner_id=None, name: str = "test") -> str:
        with runtime.uow() as work:
            _key, plaintext = keys.create_key(work.session, name=name, scopes=scopes, partner_id=partner_id)
            work.commit()
        return plaintext

    return make


@pytest.fixture
def admin_key(make_key):
    return make_key("admin", name="admin")


@pytest.fixture
def make_key_on():
    """Factory: create a key on the database of a given gateway app; returns its plaintext."""
    apps = []

    def make(app, *scopes: str, partner_id=None) -> str:
        apps.append(app)
        with app.extensions["crm.runtime"].uow() as work:
            _key, plaintext = keys.create_key(work.session, name="test", scopes=scopes, partner_id=partner_id)
            work.commit()
        return plaintext

    yield make
    for app in apps:
        app.extensions["crm.runtime"].engine.dispose()
