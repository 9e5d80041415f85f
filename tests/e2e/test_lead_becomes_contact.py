"""End to end through the gateway only: a captured lead becomes a contact over RabbitMQ."""
from __future__ import annotations

import uuid

import pytest

from tests.support.fixtures import Client
from tests.support.suite import wait_until

pytestmark = pytest.mark.e2e


def _lead(email: str, **extra) -> dict:
    return {"email": email, "first_name": "Ada", "last_name": "Lovelace", "company": "Analytical Engines Ltd",
            "job_title": "VP of Engineering", "source": "referral", **extra}


def test_a_converted_lead_becomes_one_contact_and_is_linked_back(internal_client):
    c = internal_client
    created = c.post("/api/v1/leads", json=_lead("Ada@Engines.example"), headers={"X-Request-ID": "e2e-req-1"})
    assert created.status_code == 201, created.text
    assert created.headers["X-Request-ID"] == "e2e-req-1"
    lead = created.json()
    assert lead["status"] == "new"
    assert lead["score"] > 0
    assert {f["code"] for f in lead["score_factors"]} >= {"completeness", "seniority", "source_quality"}
    assert all(f["reason"] for f in lead["score_factors"])

    again = c.post("/api/v1/leads", json={"email": " ada@engines.example", "source": "webinar"})
    assert again.status_code == 200
    assert again.json()["id"] == lead["id"]
    assert again.json()["touch_count"] == 2

    converted = c.post(f"/api/v1/leads/{lead['id']}/convert")
    assert converted.status_code == 202, converted.text
    assert converted.json()["status"] in ("converting", "converted")

    linked = wait_until(lambda: (r := c.get(f"/api/v1/leads/{lead['id']}").json())["status"] == "converted" and r,
                        timeout=30, message="lead linked to its contact")
    contact = c.get(f"/api/v1/contacts/{linked['contact_id']}")
    assert contact.status_code == 200
    assert contact.json()["email"].lower() == "ada@engines.example"

    twice = c.post(f"/api/v1/leads/{lead['id']}/convert")
    assert twice.status_code == 202
    assert twice.json()["contact_id"] == linked["contact_id"]
    matches = c.get("/api/v1/contacts", params={"email": "ADA@engines.example"}).json()["items"]
    assert [m["id"] for m in matches] == [linked["contact_id"]]


def test_a_second_lead_with_the_same_email_is_matched_to_the_existing_contact(internal_client):
    c = internal_client
    email = f"grace-{uuid.uuid4().hex[:6]}@navy.example"
    first = c.post("/api/v1/leads", json=_lead(email)).json()
    c.post(f"/api/v1/leads/{first['id']}/convert")
    first = wait_until(lambda: (r := c.get(f"/api/v1/leads/{first['id']}").json())["status"] == "converted" and r,
                       timeout=30, message="first lead converted")
    second = c.post("/api/v1/leads", json=_lead(email.upper()))
    assert second.status_code == 201, "the first lead is closed, so a new lead opens"
    c.post(f"/api/v1/leads/{second.json()['id']}/convert")
    second = wait_until(lambda: (r := c.get(f"/api/v1/leads/{second.json()['id']}").json())["status"] == "converted" and r,
                        timeout=30, message="second lead converted")
    assert second["contact_id"] == first["contact_id"]


def test_the_gateway_lists_plugins_filters_leads_and_refuses_bad_keys(suite, internal_client):
    c = internal_client
    plugin_reader = Client(suite.gateway_url, suite.create_key(scopes="plugins:read", name="plugin-reader"))
    plugins = plugin_reader.get("/api/v1/plugins")
    assert plugins.status_code == 200
    assert any("lead_scoring" in p["name"] for p in plugins.json()["items"])
    assert c.get("/api/v1/plugins").status_code == 403, "leads:* does not include plugins:read"

    c.post("/api/v1/leads", json={"email": "cold@gmail.com", "source": "purchased_list"})
    hot = c.get("/api/v1/leads", params={"min_score": 60}).json()["items"]
    assert hot and all(item["score"] >= 60 for item in hot)
    assert all(item["source"] == "referral" for item in c.get("/api/v1/leads", params={"source": "referral"}).json()["items"])

    anonymous = Client(suite.gateway_url, None).get("/api/v1/leads")
    assert anonymous.status_code == 401
    assert anonymous.headers["Content-Type"].startswith("application/problem+json")
    assert Client(suite.gateway_url, "crm_internal_forged").get("/api/v1/leads").status_code == 401

    reader = Client(suite.gateway_url, suite.create_key(scopes="contacts:read", name="reader"))
    denied = reader.post("/api/v1/leads", json={"email": "x@y.example"})
    assert denied.status_code == 403
    assert denied.headers["Content-Type"].startswith("application/problem+json")

    # A partner key needs a partner the partners service knows.
    made = suite.crm("keys", "create", "--name", "ghost", "--partner", str(uuid.uuid4()), check=False,
                     as_gateway=True)
    assert made.returncode != 0 and "No partner with id" in made.stderr and not made.stdout.strip()
    real = Client(suite.gateway_url, suite.create_key(scopes="partners:read,partners:write", name="partners-admin"))
    created = real.post("/api/v1/partners", json={"name": "Leads-test supplier", "type": "supplier"})
    assert created.status_code == 201, created.text
    partner = Client(suite.gateway_url, suite.create_key(partner=created.json()["id"], name="partner"))
    assert partner.get("/api/v1/leads").status_code == 403


def test_pagination_walks_every_lead_once(internal_client):
    c = internal_client
    tag = uuid.uuid4().hex[:6]
    for i in range(7):
        assert c.post("/api/v1/leads", json={"email": f"p{i}-{tag}@corp.example", "source": f"page-{tag}"}).status_code == 201
    seen, cursor = [], None
    while True:
        params = {"limit": 3, "source": f"page-{tag}"} | ({"cursor": cursor} if cursor else {})
        page = c.get("/api/v1/leads", params=params).json()
        seen += [item["email"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(f"p{i}-{tag}@corp.example" for i in range(7))
