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


def test_health_metrics_and_docs_are_never_limited(limited, make_key_on):
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
