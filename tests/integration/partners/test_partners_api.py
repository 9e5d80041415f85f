"""The partners routes on the real PostgreSQL: register, read, list, change status, and their errors."""
from __future__ import annotations

import uuid

import pytest

from tests.support.auth import identity_headers

from .conftest import READ, RW

pytestmark = pytest.mark.integration


def test_registering_a_partner_stores_it_and_records_partner_created(client, store):
    r = client.post("/api/v1/partners", headers={**RW, "X-Request-ID": "req-partner-1"},
                    json={"name": "  Nordic Parts AB ", "type": "distributor", "country": "SE"})
    assert r.status_code == 201, r.text
    partner = r.json
    assert r.headers["Location"] == f"/api/v1/partners/{partner['id']}"
    assert (partner["name"], partner["type"], partner["status"], partner["country"]) == \
        ("Nordic Parts AB", "distributor", "prospect", "SE")
    assert client.get(f"/api/v1/partners/{partner['id']}", headers=READ).json == partner
    [event] = store.events("crm.partner.created")
    assert event["source"] == "/services/partners" and event["subject"] == partner["id"]
    assert event["correlationid"] == "req-partner-1"
    assert event["data"] == {"partner_id": partner["id"], "name": "Nordic Parts AB", "type": "distributor",
                             "status": "prospect"}


def test_a_partner_may_start_onboarding_or_active_but_not_suspended_or_terminated(client, store):
    assert client.post("/api/v1/partners", headers=RW,
                       json={"name": "Known Co", "type": "vendor", "status": "active"}).json["status"] == "active"
    for status in ("suspended", "terminated"):
        r = client.post("/api/v1/partners", headers=RW, json={"name": "X", "type": "vendor", "status": status})
        assert r.status_code == 422 and "status" in r.json["errors"]
    assert store.partners() == 1


def test_invalid_partner_fields_are_named_and_nothing_is_stored(client, store):
    r = client.post("/api/v1/partners", headers=RW,
                    json={"name": "", "type": "wholesaler", "country": "Sweden", "partner_id": str(uuid.uuid4())})
    assert r.status_code == 422
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert set(r.json["errors"]) == {"name", "type", "country", "partner_id"}
    assert client.post("/api/v1/partners", headers=RW, json={}).json["errors"].keys() == {"name", "type"}
    assert store.partners() == 0 and store.events() == []


def test_listing_filters_by_type_status_and_name_and_pages_newest_first(client, api):
    api.partner("Alpha Metals", "supplier")
    api.partner("Beta Logistics", "distributor")
    api.partner("Gamma Metal Works", "supplier", status="active")
    api.partner("Delta 100% Resale", "reseller")
    api.partner("metalhead retail", "reseller")

    def names(query: str) -> list[str]:
        r = client.get(f"/api/v1/partners?{query}", headers=READ)
        assert r.status_code == 200, r.text
        return [p["name"] for p in r.json["items"]]

    assert names("type=supplier") == ["Gamma Metal Works", "Alpha Metals"]
    assert names("status=active") == ["Gamma Metal Works"]
    assert names("q=METAL") == ["metalhead retail", "Gamma Metal Works", "Alpha Metals"]
    assert names("q=metal&type=supplier&status=prospect") == ["Alpha Metals"]
    assert names("q=100%25") == ["Delta 100% Resale"], "a % in q is a literal, not a wildcard"
    page1 = client.get("/api/v1/partners?limit=2", headers=READ).json
    page2 = client.get(f"/api/v1/partners?limit=2&cursor={page1['next_cursor']}", headers=READ).json
    page3 = client.get(f"/api/v1/partners?limit=2&cursor={page2['next_cursor']}", headers=READ).json
    assert [p["name"] for p in page1["items"] + page2["items"] + page3["items"]] == [
        "metalhead retail", "Delta 100% Resale", "Gamma Metal Works", "Beta Logistics", "Alpha Metals"]
    assert page3["next_cursor"] is None
    bad = client.get("/api/v1/partners?type=wholesaler&status=gone&limit=0&cursor=%21%21", headers=READ)
    assert bad.status_code == 422 and {"type", "status", "limit"} <= set(bad.json["errors"])
    assert client.get("/api/v1/partners?cursor=bm9wZQ", headers=READ).json["errors"] == {"cursor": ["Invalid cursor."]}


def test_a_partner_moves_through_onboarding_to_active_and_can_be_suspended_and_reactivated(client, api):
    partner = api.partner()
    path = f"/api/v1/partners/{partner['id']}"
    for status in ("onboarding", "active", "suspended", "active"):
        r = client.patch(path, headers=RW, json={"status": status})
        assert r.status_code == 200, r.text
        assert r.json["status"] == status
    r = client.patch(path, headers=RW, json={"name": "Acme Supplies GmbH", "country": "DE", "type": "vendor"})
    assert (r.json["name"], r.json["country"], r.json["type"], r.json["status"]) == \
        ("Acme Supplies GmbH", "DE", "vendor", "active")


def test_a_disallowed_status_move_is_a_conflict_and_changes_nothing(client, api):
    partner = api.partner()
    path = f"/api/v1/partners/{partner['id']}"
    r = client.patch(path, headers=RW, json={"status": "suspended", "name": "Renamed"})
    assert r.status_code == 409
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json["current_status"] == "prospect"
    assert client.get(path, headers=READ).json["name"] == "Acme Supplies"


def test_terminated_is_final(client, api):
    partner = api.partner()
    path = f"/api/v1/partners/{partner['id']}"
    assert client.patch(path, headers=RW, json={"status": "terminated"}).status_code == 200
    for change in ({"status": "active"}, {"status": "prospect"}, {"name": "Back again"}):
        r = client.patch(path, headers=RW, json=change)
        assert r.status_code == 409, change
        assert r.json["current_status"] == "terminated"
    assert client.patch(path, headers=RW, json={"status": "terminated"}).status_code == 200, "no move is no conflict"
    assert client.get(path, headers=READ).json["status"] == "terminated"


@pytest.mark.parametrize("method, path, kwargs, status", [
    ("get", "/api/v1/partners/not-a-uuid", {}, 404),
    ("get", f"/api/v1/partners/{uuid.uuid4()}", {}, 404),
    ("patch", f"/api/v1/partners/{uuid.uuid4()}", {"json": {"status": "active"}}, 404),
    ("delete", "/api/v1/partners", {}, 405),
    ("post", "/api/v1/partners", {"data": "name=Acme&type=supplier", "content_type": "application/x-www-form-urlencoded"}, 415),
    ("patch", f"/api/v1/partners/{uuid.uuid4()}", {"data": "<status/>", "content_type": "application/xml"}, 415),
    ("post", "/api/v1/partners", {"data": "{not json", "content_type": "application/json"}, 400),
])
def test_errors_are_problem_details(client, store, method, path, kwargs, status):
    r = getattr(client, method)(path, headers=RW, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json["status"] == status
    assert store.partners() == 0


def test_scopes_guard_every_partner_route(client, api, store):
    partner = api.partner()
    pid = partner["id"]
    read_only, other_service = identity_headers("partners:read"), identity_headers("leads:read", "leads:write")
    writes = [("post", "/api/v1/partners", {"name": "X", "type": "vendor"}),
              ("patch", f"/api/v1/partners/{pid}", {"status": "onboarding"})]
    for method, path, body in writes:
        assert getattr(client, method)(path, headers=read_only, json=body).status_code == 403
    for path in ("/api/v1/partners", f"/api/v1/partners/{pid}"):
        assert client.get(path, headers=other_service).status_code == 403
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"X-CRM-Identity": "forged"}).status_code == 401
    assert client.get("/api/v1/partners", headers=identity_headers("partners:*")).status_code == 200
    assert client.get(f"/api/v1/partners/{pid}", headers=identity_headers("admin")).status_code == 200
    assert store.partners() == 1 and client.get(f"/api/v1/partners/{pid}", headers=READ).json["status"] == "prospect"


def test_a_caller_without_the_scope_is_refused_before_its_input_is_read(client):
    r = client.post("/api/v1/partners", headers=identity_headers("partners:read"), json={"type": "nonsense"})
    assert r.status_code == 403
