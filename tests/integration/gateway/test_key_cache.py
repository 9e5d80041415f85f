"""The key cache on PostgreSQL: warm caches in several gateway processes refuse a revoked key at once."""
from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from services.gateway.app import create_app
from services.gateway.cli import keys as keys_cli

pytestmark = pytest.mark.integration

# Far longer than any test: a refusal can come only from the revision counter, never from an entry expiring.
LONG_TTL = {"CRM_KEY_CACHE_SECONDS": "3600"}


@pytest.fixture
def two_gateways(gateway_settings, make_key_on):
    """Two gateway apps, as two processes would be: each its own engine and key cache, one database."""
    settings = gateway_settings(**LONG_TTL)
    apps = [create_app(settings), create_app(settings)]
    yield apps
    for app in apps:
        app.extensions["crm.runtime"].engine.dispose()  # closes the key cache's connections too


def _warm(client, key) -> None:
    for _ in range(3):
        assert client.get("/api/v1/leads", headers={"X-API-Key": key}).status_code == 200


def _key_id(client, admin, key) -> str:
    listed = client.get("/api/v1/admin/keys", headers={"X-API-Key": admin}).json["items"]
    return next(k["id"] for k in listed if key.split("_", 2)[2].startswith(k["prefix"]))


def test_a_key_revoked_through_one_gateway_is_refused_by_the_other_at_once(two_gateways, make_key_on, upstream):
    first, second = two_gateways
    admin, key = make_key_on(first, "admin"), make_key_on(first, "leads:read")
    one, two = first.test_client(), second.test_client()
    _warm(one, key)
    _warm(two, key)
    assert len(second.extensions["crm.gateway"].key_cache) == 1, "the other gateway holds the key in its cache"

    assert one.delete(f"/api/v1/admin/keys/{_key_id(one, admin, key)}", headers={"X-API-Key": admin}).status_code == 204

    refused = two.get("/api/v1/leads", headers={"X-API-Key": key})
    assert refused.status_code == 401
    assert refused.mimetype == "application/problem+json"
    assert one.get("/api/v1/leads", headers={"X-API-Key": key}).status_code == 401
    # Other keys keep working in both; the admin key was cached too and is reloaded once.
    assert two.get("/api/v1/admin/keys", headers={"X-API-Key": admin}).status_code == 200


def test_a_key_revoked_with_the_cli_is_refused_by_a_warm_gateway_at_once(two_gateways, make_key_on,
                                                                        gateway_database, upstream):
    gateway = two_gateways[0]
    admin, key = make_key_on(gateway, "admin"), make_key_on(gateway, "leads:read")
    client = gateway.test_client()
    _warm(client, key)
    result = CliRunner().invoke(keys_cli, ["revoke", _key_id(client, admin, key)],
                                env={"GATEWAY_DATABASE_URL": gateway_database, "DATABASE_URL": None,
                                     "CRM_IDENTITY_PRIVATE_KEY": None})
    assert result.exit_code == 0, result.output
    assert client.get("/api/v1/leads", headers={"X-API-Key": key}).status_code == 401


def test_revoking_twice_keeps_the_first_time_and_the_key_stays_refused(two_gateways, make_key_on, upstream):
    first, second = two_gateways
    admin, key = make_key_on(first, "admin"), make_key_on(first, "leads:read")
    one, two = first.test_client(), second.test_client()
    key_id = _key_id(one, admin, key)
    assert one.delete(f"/api/v1/admin/keys/{key_id}", headers={"X-API-Key": admin}).status_code == 204
    first_time = next(k for k in one.get("/api/v1/admin/keys", headers={"X-API-Key": admin}).json["items"]
                      if k["id"] == key_id)["revoked_at"]
    assert two.delete(f"/api/v1/admin/keys/{key_id}", headers={"X-API-Key": admin}).status_code == 204
    listed = two.get("/api/v1/admin/keys", headers={"X-API-Key": admin}).json["items"]
    assert next(k for k in listed if k["id"] == key_id)["revoked_at"] == first_time
    assert two.get("/api/v1/leads", headers={"X-API-Key": key}).status_code == 401


def test_the_revision_read_survives_the_database_dropping_its_connections(gateway_database, make_key_on,
                                                                         two_gateways, upstream):
    import psycopg

    from tests.support.infra import admin_database_url

    gateway = two_gateways[0]
    key = make_key_on(gateway, "leads:read")
    client = gateway.test_client()
    _warm(client, key)
    name = gateway_database.rsplit("/", 1)[1]
    with psycopg.connect(admin_database_url().replace("+psycopg", ""), autocommit=True) as admin:
        ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                              (name,)).fetchone()[0]
        assert ended >= 1
        # pg_terminate_backend only signals; wait until the backends are gone, so the next call meets dead ones.
        for _ in range(500):
            if not admin.execute("SELECT 1 FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone():
                break
            time.sleep(0.01)
    assert client.get("/api/v1/leads", headers={"X-API-Key": key}).status_code == 200
