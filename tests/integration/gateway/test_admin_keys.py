"""The admin API: create (key shown once), list (never the secret), revoke; admin scope only."""
from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.integration


def _admin(key):
    return {"X-API-Key": key}


def test_an_admin_creates_an_internal_key_that_works_at_once(client, admin_key, upstream):
    response = client.post("/api/v1/admin/keys", json={"name": "billing", "scopes": ["leads:read", "contacts:*"]},
                           headers=_admin(admin_key))
    assert response.status_code == 201
    body = response.json
    assert body["key"].startswith("crm_internal_")
    assert body["kind"] == "internal" and body["scopes"] == ["contacts:*", "leads:read"]
    assert body["key"].split("_", 2)[2].startswith(body["prefix"])
    assert "key_hash" not in body
    assert client.get("/api/v1/leads", headers={"X-API-Key": body["key"]}).status_code == 200


def test_an_admin_creates_a_partner_key_bound_to_one_partner(client, admin_key):
    partner = str(uuid.uuid4())
    response = client.post("/api/v1/admin/keys", json={"name": "acme", "partner_id": partner}, headers=_admin(admin_key))
    assert response.status_code == 201
    assert response.json["kind"] == "partner" and response.json["partner_id"] == partner
    assert response.json["key"].startswith("crm_partner_")


def test_a_partner_key_needs_a_partner_the_partners_service_knows(client, admin_key, upstream):
    ghost = str(uuid.uuid4())
    upstream.missing.add(f"/api/v1/partners/{ghost}")
    response = client.post("/api/v1/admin/keys", json={"name": "ghost", "partner_id": ghost}, headers=_admin(admin_key))
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert "partner_id" in response.json["errors"]
    listed = client.get("/api/v1/admin/keys", headers=_admin(admin_key)).json["items"]
    assert not [k for k in listed if k["name"] == "ghost"], "nothing was stored"


def test_a_partner_key_is_not_made_while_the_partners_service_cannot_say(gateway_settings, make_key_on):
    from services.gateway.app import create_app

    app = create_app(gateway_settings(CRM_PARTNERS_URL="http://127.0.0.1:9"))
    try:
        admin = make_key_on(app, "admin")
        response = app.test_client().post("/api/v1/admin/keys", json={"name": "p", "partner_id": str(uuid.uuid4())},
                                          headers=_admin(admin))
        assert response.status_code == 503 and response.mimetype == "application/problem+json"
    finally:
        app.extensions["crm.runtime"].engine.dispose()


@pytest.mark.parametrize("body, field", [
    ({"name": "x", "scopes": ["leads:delete"]}, "scopes"),
    ({"name": "x", "partner_id": str(uuid.uuid4()), "scopes": ["leads:read"]}, "scopes"),
    ({"name": "", "scopes": []}, "name"),
    ({"scopes": ["leads:read"]}, "name"),
    ({"name": "x", "partner_id": "nope"}, "partner_id"),
    ({"name": "x", "surprise": 1}, "surprise"),
])
def test_an_invalid_key_request_is_422_naming_the_field(client, admin_key, body, field):
    response = client.post("/api/v1/admin/keys", json=body, headers=_admin(admin_key))
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert field in response.json["errors"]


def test_the_key_list_never_shows_a_hash_or_a_key_and_pages_with_a_cursor(client, admin_key, make_key):
    plaintexts = [make_key("leads:read", name=f"app-{i}") for i in range(4)]
    first = client.get("/api/v1/admin/keys?limit=3", headers=_admin(admin_key))
    assert first.status_code == 200
    assert [k["name"] for k in first.json["items"]] == ["app-3", "app-2", "app-1"]
    second = client.get(f"/api/v1/admin/keys?limit=3&cursor={first.json['next_cursor']}", headers=_admin(admin_key))
    assert [k["name"] for k in second.json["items"]] == ["app-0", "admin"]
    assert second.json["next_cursor"] is None
    raw = first.get_data(as_text=True) + second.get_data(as_text=True)
    assert "key_hash" not in raw and '"key"' not in raw
    assert not any(p in raw for p in plaintexts + [admin_key])
    assert client.get("/api/v1/admin/keys?cursor=garbage", headers=_admin(admin_key)).status_code == 422


def test_revoking_a_key_is_204_and_an_unknown_one_is_404(client, admin_key, make_key):
    make_key("leads:read", name="doomed")
    key_id = client.get("/api/v1/admin/keys", headers=_admin(admin_key)).json["items"][0]["id"]
    assert client.delete(f"/api/v1/admin/keys/{key_id}", headers=_admin(admin_key)).status_code == 204
    listed = client.get("/api/v1/admin/keys", headers=_admin(admin_key)).json["items"][0]
    assert listed["revoked_at"] is not None
    missing = client.delete(f"/api/v1/admin/keys/{uuid.uuid4()}", headers=_admin(admin_key))
    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"


def test_the_admin_api_needs_the_admin_scope(client, make_key):
    key = make_key("leads:*", "contacts:*")
    assert client.get("/api/v1/admin/keys", headers={"X-API-Key": key}).status_code == 403
    assert client.post("/api/v1/admin/keys", json={"name": "x"}, headers={"X-API-Key": key}).status_code == 403
