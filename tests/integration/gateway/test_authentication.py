"""Only a valid, unrevoked API key gets through the gateway; partner keys only to the partner portal."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from services.gateway.models import ApiKey

pytestmark = pytest.mark.integration


def test_a_call_without_a_key_is_401_with_a_bearer_challenge(client, upstream):
    response = client.get("/api/v1/leads")
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json["status"] == 401
    assert upstream.received == []


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer crm_internal_thisKeyWasNeverIssuedByTheGateway000000000"},
    {"X-API-Key": "crm_partner_thisKeyWasNeverIssuedByTheGateway0000000000"},
    {"Authorization": "Bearer not-a-key"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
])
def test_an_unknown_or_malformed_key_is_401(client, upstream, headers):
    response = client.get("/api/v1/leads", headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert "WWW-Authenticate" in response.headers
    assert upstream.received == []


def test_a_key_is_accepted_as_bearer_token_or_x_api_key(client, make_key):
    key = make_key("leads:read")
    assert client.get("/api/v1/leads", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert client.get("/api/v1/leads", headers={"X-API-Key": key}).status_code == 200


def test_a_revoked_key_is_refused_on_the_next_call(client, make_key, admin_key):
    key = make_key("leads:read")
    assert client.get("/api/v1/leads", headers={"X-API-Key": key}).status_code == 200
    listed = client.get("/api/v1/admin/keys", headers={"X-API-Key": admin_key}).json["items"]
    key_id = next(k["id"] for k in listed if key.split("_", 2)[2].startswith(k["prefix"]))
    assert client.delete(f"/api/v1/admin/keys/{key_id}", headers={"X-API-Key": admin_key}).status_code == 204
    response = client.get("/api/v1/leads", headers={"X-API-Key": key})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


def test_a_partner_key_is_forbidden_outside_the_partner_portal(client, make_key, upstream):
    key = make_key(partner_id=uuid.uuid4())
    for path in ("/api/v1/leads", "/api/v1/contracts/1", "/api/v1/partners", "/api/v1/admin/keys",
                 "/api/v1/partner-portal-x/terms"):
        response = client.get(path, headers={"X-API-Key": key})
        assert response.status_code == 403, path
        assert response.mimetype == "application/problem+json"
    assert upstream.received == []


def test_a_partner_key_reaches_the_partner_portal(client, make_key, upstream):
    key = make_key(partner_id=uuid.uuid4())
    response = client.get("/api/v1/partner-portal/contracts", headers={"X-API-Key": key})
    assert response.status_code == 200
    assert upstream.received[-1]["path"] == "/api/v1/partner-portal/contracts"


def test_using_a_key_records_when_it_was_last_used(client, make_key, gateway):
    key = make_key("leads:read")
    client.get("/api/v1/leads", headers={"X-API-Key": key})
    with gateway.extensions["crm.runtime"].session_factory() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.name == "test"))
    assert row.last_used_at is not None
    assert row.last_used_at.tzinfo is not None


def test_health_metrics_and_docs_need_no_key(client):
    for path in ("/healthz", "/metrics", "/api/openapi.json"):
        assert client.get(path).status_code == 200, path
