"""The partner portal through the gateway, with two partners: each sees only its own records."""
from __future__ import annotations

import pytest

from tests.support.fixtures import Client

pytestmark = pytest.mark.e2e

TERMS = {"payment_terms_days": 30, "discount_percent": "2.50", "delivery_lead_time_days": 7,
         "minimum_order_volume": "1000.000", "currency": "EUR", "effective_from": "2026-01-01",
         "effective_to": "2027-12-31", "auto_renew": True, "notice_period_days": 60}


@pytest.fixture(scope="module")
def two_partners(suite, internal_client):
    out = {}
    for name in ("alpha", "beta"):
        partner = internal_client.post("/api/v1/partners", json={"name": f"{name} supplies", "type": "supplier"})
        assert partner.status_code == 201, partner.text
        pid = partner.json()["id"]
        contract = internal_client.post(f"/api/v1/partners/{pid}/contracts", json={"title": f"{name} frame", "terms": TERMS})
        assert contract.status_code == 201, contract.text
        key = suite.create_key(partner=pid, name=f"{name}-portal")
        out[name] = {"id": pid, "contract": contract.json()["id"], "client": Client(suite.gateway_url, key)}
    return out


def test_each_partner_sees_only_its_own_records_on_every_portal_route(two_partners):
    for me, other in (("alpha", "beta"), ("beta", "alpha")):
        c = two_partners[me]["client"]
        mine, theirs = two_partners[me]["contract"], two_partners[other]["contract"]
        assert c.get("/api/v1/partner-portal/me").json()["id"] == two_partners[me]["id"]
        assert [x["id"] for x in c.get("/api/v1/partner-portal/contracts").json()["items"]] == [mine]
        assert c.get(f"/api/v1/partner-portal/contracts/{mine}").status_code == 200
        assert c.get(f"/api/v1/partner-portal/contracts/{mine}/terms").status_code == 200
        for path in (f"/api/v1/partner-portal/contracts/{theirs}", f"/api/v1/partner-portal/contracts/{theirs}/terms"):
            r = c.get(path)
            assert r.status_code == 404, path
            assert r.headers["Content-Type"].startswith("application/problem+json")


def test_a_partner_key_reaches_nothing_but_the_portal_and_an_internal_key_is_refused_there(two_partners, internal_client):
    alpha = two_partners["alpha"]["client"]
    for path in ("/api/v1/partners", f"/api/v1/contracts/{two_partners['alpha']['contract']}", "/api/v1/contacts",
                 "/api/v1/partner-portal/../partners"):
        assert alpha.get(path).status_code in (400, 403), path
    for path in ("/api/v1/partner-portal/me", "/api/v1/partner-portal/contracts"):
        assert internal_client.get(path).status_code == 403


def test_changing_terms_needs_the_current_etag_and_keeps_the_history(two_partners, internal_client):
    contract_id = two_partners["beta"]["contract"]
    current = internal_client.get(f"/api/v1/contracts/{contract_id}")
    etag = current.headers["ETag"]
    assert internal_client.post(f"/api/v1/contracts/{contract_id}/terms", json={"payment_terms_days": 45}).status_code == 428
    changed = internal_client.post(f"/api/v1/contracts/{contract_id}/terms", json={"payment_terms_days": 45},
                                   headers={"If-Match": etag})
    assert changed.status_code in (200, 201), changed.text
    stale = internal_client.post(f"/api/v1/contracts/{contract_id}/terms", json={"payment_terms_days": 60},
                                 headers={"If-Match": etag})
    assert stale.status_code == 412
    history = two_partners["beta"]["client"].get(f"/api/v1/partner-portal/contracts/{contract_id}/terms").json()
    assert [v["payment_terms_days"] for v in history["items"]] == [45, 30]  # newest first
