"""Per-key rate limits (DESIGN §5): the call over the limit is 429 problem+json with Retry-After."""
from __future__ import annotations

import uuid

import pytest
import redis

from services.gateway.app import create_app

pytestmark = pytest.mark.integration

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def limited(gateway_settings):
    app = create_app(gateway_settings(CRM_RATE_LIMIT="3/minute"))
    yield app
    app.extensions["crm.runtime"].engine.dispose()


def test_the_call_over_the_limit_is_429_problem_json_with_retry_after(limited, make_key_on, upstream):
    client, key = limited.test_client(), make_key_on(limited, "leads:read")
    for remaining in (2, 1, 0):
        ok = client.get("/api/v1/leads", headers={"X-API-Key": key})
        assert ok.status_code == 200
        assert ok.headers["X-RateLimit-Limit"] == "3"
        assert ok.headers["X-RateLimit-Remaining"] == str(remaining)
    forwarded = len(upstream.received)
    refused = client.get("/api/v1/leads", headers={"X-API-Key": key})
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    assert refused.json["status"] == 429
    assert refused.json["type"].endswith("/too-many-requests")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert len(upstream.received) == forwarded  # the refused call never reached the upstream


def test_the_limit_is_per_key_and_covers_the_admin_api(limited, make_key_on):
    client = limited.test_client()
    first, second = make_key_on(limited, "admin"), make_key_on(limited, "leads:read")
    for _ in range(3):
        assert client.get("/api/v1/admin/keys", headers={"X-API-Key": first}).status_code == 200
    assert client.get("/api/v1/leads", headers={"X-API-Key": first}).status_code == 429
    assert client.get("/api/v1/leads", headers={"X-API-Key": second}).status_code == 200


def test_health_metrics_and_docs_are_not_counted_against_the_key(limited, make_key_on):
    client, key = limited.test_client(), make_key_on(limited, "leads:read")
    for _ in range(4):
        client.get("/api/v1/leads", headers={"X-API-Key": key})
    for path in ("/healthz", "/readyz", "/metrics", "/api/openapi.json"):
        for _ in range(5):
            response = client.get(path, headers={"X-API-Key": key})
            assert response.status_code == 200, path
            assert "X-RateLimit-Limit" not in response.headers, path


def test_off_disables_the_limit(gateway_settings, make_key_on):
    app = create_app(gateway_settings(CRM_RATE_LIMIT="off"))
    client, key = app.test_client(), make_key_on(app, "leads:read")
    for _ in range(5):
        response = client.get("/api/v1/leads", headers={"X-API-Key": key})
        assert response.status_code == 200
        assert "X-RateLimit-Limit" not in response.headers


def test_gateways_on_one_redis_share_the_count(gateway_settings, make_key_on):
    prefix = f"crm-test-{uuid.uuid4().hex}"
    settings = gateway_settings(CRM_RATE_LIMIT="3/minute", REDIS_URL=REDIS_URL)
    one = create_app(settings, rate_limit_prefix=prefix)
    two = create_app(settings, rate_limit_prefix=prefix)
    key = make_key_on(one, "leads:read")
    make_key_on(two)  # registers the second app for disposal
    store = redis.Redis.from_url(REDIS_URL)
    try:
        headers = {"X-API-Key": key}
        assert one.test_client().get("/api/v1/leads", headers=headers).status_code == 200
        assert two.test_client().get("/api/v1/leads", headers=headers).status_code == 200
        assert one.test_client().get("/api/v1/leads", headers=headers).status_code == 200
        refused = two.test_client().get("/api/v1/leads", headers=headers)
        assert refused.status_code == 429
        assert refused.mimetype == "application/problem+json"
        assert int(refused.headers["Retry-After"]) >= 1
        assert any(prefix in k.decode() for k in store.scan_iter(match=f"*{prefix}*"))
    finally:
        for k in store.scan_iter(match=f"*{prefix}*"):
            store.delete(k)
        store.close()


# -- before authentication, per client address ---------------------------------------------------------------

@pytest.fixture
def strict(gateway_settings):
    app = create_app(gateway_settings(CRM_RATE_LIMIT="100/minute", CRM_RATE_LIMIT_FAILED_AUTH="3/minute",
                                      CRM_RATE_LIMIT_PUBLIC="2/minute"))
    yield app
    app.extensions["crm.runtime"].engine.dispose()


def _from(address: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}}


def test_an_address_that_keeps_failing_to_authenticate_is_refused_before_its_key_is_read(strict, make_key_on):
    client, good = strict.test_client(), make_key_on(strict, "leads:read")
    attempts = [client.get("/api/v1/leads", headers={"X-API-Key": "crm_internal_guess"}, **_from("10.0.0.1")),
                client.get("/api/v1/leads", **_from("10.0.0.1")),  # no key at all counts too
                client.get("/api/v1/leads", headers={"X-API-Key": "crm_internal_guess2"}, **_from("10.0.0.1"))]
    assert [r.status_code for r in attempts] == [401, 401, 401]
    cache = strict.extensions["crm.gateway"].key_cache
    loads = []
    original = cache._load
    cache._load = lambda prefix: loads.append(prefix) or original(prefix)
    refused = client.get("/api/v1/leads", headers={"X-API-Key": good}, **_from("10.0.0.1"))
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert loads == [], "the refused call never reached the key lookup"
    # Another address is not affected, and a good key from it is served.
    assert client.get("/api/v1/leads", headers={"X-API-Key": good}, **_from("10.0.0.2")).status_code == 200


def test_successful_calls_do_not_count_as_failures(strict, make_key_on):
    client, good = strict.test_client(), make_key_on(strict, "leads:read")
    for _ in range(6):
        assert client.get("/api/v1/leads", headers={"X-API-Key": good}, **_from("10.0.0.3")).status_code == 200


def test_the_public_documents_are_limited_per_address_and_health_is_not(strict):
    client = strict.test_client()
    for path in ("/readyz", "/api/openapi.json"):
        assert [client.get(path, **_from("10.0.0.4")).status_code for _ in range(2)] == [200, 200], path
        refused = client.get(path, **_from("10.0.0.4"))
        assert refused.status_code == 429 and refused.mimetype == "application/problem+json", path
        assert client.get(path, **_from("10.0.0.5")).status_code == 200, path
    assert all(client.get("/healthz", **_from("10.0.0.4")).status_code == 200 for _ in range(5))


def test_behind_a_trusted_proxy_the_forwarded_client_address_is_limited(gateway_settings):
    app = create_app(gateway_settings(CRM_RATE_LIMIT_FAILED_AUTH="2/minute", CRM_PROXY_HOPS="1"))
    try:
        client = app.test_client()
        proxy = _from("10.9.9.9")
        for _ in range(2):
            assert client.get("/api/v1/leads", headers={"X-Forwarded-For": "203.0.113.7"}, **proxy).status_code == 401
        assert client.get("/api/v1/leads", headers={"X-Forwarded-For": "203.0.113.7"}, **proxy).status_code == 429
        # Another client behind the same proxy is still heard.
        assert client.get("/api/v1/leads", headers={"X-Forwarded-For": "203.0.113.8"}, **proxy).status_code == 401
    finally:
        app.extensions["crm.runtime"].engine.dispose()


def test_off_disables_the_address_limits(gateway_settings):
    app = create_app(gateway_settings(CRM_RATE_LIMIT_FAILED_AUTH="off", CRM_RATE_LIMIT_PUBLIC="off"))
    try:
        client = app.test_client()
        assert all(client.get("/api/v1/leads", **_from("10.0.0.6")).status_code == 401 for _ in range(40))
        assert all(client.get("/readyz", **_from("10.0.0.6")).status_code == 200 for _ in range(5))
    finally:
        app.extensions["crm.runtime"].engine.dispose()
