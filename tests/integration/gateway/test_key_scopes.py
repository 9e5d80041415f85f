"""Neither the admin API nor `crm keys create` makes a key with a scope no service defines (issue 7 §2).

`admin:*` once passed the `<name>:*` shape check and, through the `<svc>:*` expansion, granted `admin`.
"""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from services.gateway.cli import keys as keys_cli

pytestmark = pytest.mark.integration

REFUSED = ["admin:*", "admin:read", "billing:read", "gateway:*"]


@pytest.mark.parametrize("scope", REFUSED)
def test_the_admin_api_refuses_a_scope_no_service_defines(client, admin_key, scope):
    response = client.post("/api/v1/admin/keys", json={"name": "x", "scopes": ["leads:read", scope]},
                           headers={"X-API-Key": admin_key})

    assert response.status_code == 422, response.text
    assert response.mimetype == "application/problem+json"
    assert response.json["errors"] == {"scopes": [f"Unknown scope {scope!r}."]}
    listed = client.get("/api/v1/admin/keys", headers={"X-API-Key": admin_key}).json["items"]
    assert [k["name"] for k in listed] == ["admin"]


def test_the_cli_refuses_admin_star_and_creates_a_loyalty_admin_key(gateway_database, client, admin_key):
    env = {"GATEWAY_DATABASE_URL": gateway_database, "DATABASE_URL": None, "CRM_IDENTITY_PRIVATE_KEY": None}

    refused = CliRunner().invoke(keys_cli, ["create", "--name", "x", "--scopes", "admin:*"], env=env)
    made = CliRunner().invoke(keys_cli, ["create", "--name", "ops", "--scopes", "loyalty:admin,loyalty:read"], env=env)

    assert refused.exit_code != 0 and "admin:*" in refused.output
    assert made.exit_code == 0, made.output
    listed = client.get("/api/v1/admin/keys", headers={"X-API-Key": admin_key}).json["items"]
    assert {k["name"]: k["scopes"] for k in listed}["ops"] == ["loyalty:admin", "loyalty:read"]
    assert "x" not in {k["name"] for k in listed}
