"""A gateway app on its own migrated PostgreSQL database, in front of real HTTP upstreams."""
from __future__ import annotations

import pytest

from crm.registry import SUITE
from services.gateway import keys

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


def _upstream_env(upstream) -> dict[str, str]:
    env = {f"CRM_{e.env_prefix}_URL": upstream.url for e in SUITE.upstreams}
    env["CRM_UPSTREAM_TIMEOUT"] = "1"
    return env


@pytest.fixture
def gateway_settings(make_settings, gateway_database, upstream):
    """Contacts and leads on the echo upstream; loyalty and partners too, so every route has a live server."""
    def make(**env):
        return make_settings("gateway", gateway_database, **{**_upstream_env(upstream), **env})

    return make


@pytest.fixture
def gateway(service_app, gateway_database, upstream):
    return service_app("gateway", database_url=gateway_database, **_upstream_env(upstream))


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
