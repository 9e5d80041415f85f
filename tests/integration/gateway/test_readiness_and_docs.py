"""Aggregated /readyz and /api/openapi.json across the gateway and its upstreams."""
from __future__ import annotations

import json

import jwt
import pytest

from crm.registry import SUITE
from services.common.identity import HEADER, verify_token
from services.gateway.app import create_app
from tests.support.infra import IDENTITY_PUBLIC_KEY, free_port

pytestmark = pytest.mark.integration


def test_readyz_is_200_with_every_upstream_listed_when_all_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"] == {"database": "ok", "contacts": "ok", "leads": "ok", "loyalty": "ok",
                                       "partners": "ok"}


def test_readyz_is_503_naming_the_upstream_that_is_down(gateway_settings):
    app = create_app(gateway_settings(CRM_CONTACTS_URL=f"http://127.0.0.1:{free_port()}"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.json["unavailable"] == ["contacts"]
    assert "contacts" in response.json["detail"]
    assert response.json["checks"]["contacts"].startswith("unavailable")
    assert response.json["checks"]["leads"] == "ok"
    app.extensions["crm.runtime"].engine.dispose()


def test_an_upstream_that_reports_itself_unready_makes_the_gateway_unready(client, upstream):
    upstream.ready = False
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["leads"] == "unavailable: HTTP 503"


def test_an_optional_upstream_that_is_down_is_reported_without_failing_readiness(gateway_settings, tmp_path):
    table = tmp_path / "routes.json"
    table.write_text(json.dumps({"routes": SUITE.route_map(), "optional": ["loyalty"]}))
    app = create_app(gateway_settings(CRM_LOYALTY_URL=f"http://127.0.0.1:{free_port()}", CRM_GATEWAY_ROUTES=str(table)))
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"]["loyalty"].endswith("(optional)")
    app.extensions["crm.runtime"].engine.dispose()


def test_upstreams_are_probed_in_parallel(client, upstream):
    upstream.readyz_delay = 0.5  # long enough for the probes of the four upstreams to overlap
    response = client.get("/readyz")
    assert response.status_code == 200
    assert upstream.readyz_max_in_flight >= 2, "probes ran one after another"


def test_the_openapi_document_merges_the_gateways_and_the_upstreams_specs(client, upstream):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    spec = response.json
    assert "/api/v1/admin/keys" in spec["paths"]
    assert "/api/v1/leads" in spec["paths"]
    assert "EchoLead" in spec["components"]["schemas"]
    assert "echo" in {t["name"] for t in spec["tags"]}
    fetches = [r for r in upstream.received if r["path"] == "/api/openapi.json"]
    assert fetches, "the upstream spec was fetched"
    token = fetches[-1]["headers"][HEADER.lower()]
    meant_for = jwt.decode(token, options={"verify_signature": False})["aud"]  # the upstream that fetched last
    assert meant_for in {f"crm-{e.name}" for e in SUITE.upstreams}
    principal, _ = verify_token(token, IDENTITY_PUBLIC_KEY, service=meant_for.removeprefix("crm-"))
    assert principal.key_id == "gateway"


def test_the_openapi_document_still_answers_when_an_upstream_is_down(gateway_settings):
    closed = f"http://127.0.0.1:{free_port()}"
    app = create_app(gateway_settings(**{f"CRM_{s.upper()}_URL": closed for s in ("contacts", "leads", "loyalty", "partners")}))
    response = app.test_client().get("/api/openapi.json")
    assert response.status_code == 200
    assert "/api/v1/admin/keys" in response.json["paths"]
    assert response.json["x-unavailable-upstreams"] == ["contacts", "leads", "loyalty", "partners"]
    app.extensions["crm.runtime"].engine.dispose()
