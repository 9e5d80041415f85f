"""Contracts and their versioned terms on the real PostgreSQL: ETag/If-Match, history, events, errors."""
from __future__ import annotations

import threading
import uuid

import pytest

from tests.support.auth import identity_headers

from .conftest import READ, RW, TERMS

pytestmark = pytest.mark.integration


def _if_match(tag: str) -> dict:
    return {**RW, "If-Match": tag}


def test_making_a_contract_stores_version_1_of_its_terms_and_records_contract_created(client, api, store):
    partner = api.partner()
    r = client.post(f"/api/v1/partners/{partner['id']}/contracts", headers=RW,
                    json={"title": "Frame agreement 2026", "terms": {**TERMS, "discount_percent": "2.5", "minimum_order_volume": 1000}})
    assert r.status_code == 201, r.text
    contract = r.json
    assert r.headers["ETag"] == 'W/"1"'
    assert r.headers["Location"] == f"/api/v1/contracts/{contract['id']}"
    assert (contract["partner_id"], contract["title"], contract["terms_version"]) == (partner["id"], "Frame agreement 2026", 1)
    # Decimals travel as strings at the scale they are stored, never as floats.
    assert contract["terms"]["discount_percent"] == "2.50"
    assert contract["terms"]["minimum_order_volume"] == "1000.000"
    assert {k: contract["terms"][k] for k in TERMS} == TERMS
    assert contract["terms"]["version"] == 1 and contract["terms"]["changed_by"] == "test-key"
    got = client.get(f"/api/v1/contracts/{contract['id']}", headers=READ)
    assert got.status_code == 200 and got.headers["ETag"] == 'W/"1"' and got.json == contract
    [event] = store.events("crm.contract.created")
    assert event["subject"] == contract["id"]
    assert event["data"] == {"contract_id": contract["id"], "partner_id": partner["id"], "terms_version": 1}


def test_optional_terms_default_to_an_open_ended_contract_without_renewal(client, api):
    partner = api.partner()
    terms = {k: v for k, v in TERMS.items() if k not in ("effective_to", "auto_renew", "notice_period_days")}
    r = client.post(f"/api/v1/partners/{partner['id']}/contracts", headers=RW, json={"title": "Open", "terms": terms})
    assert r.status_code == 201, r.text
    assert (r.json["terms"]["effective_to"], r.json["terms"]["auto_renew"], r.json["terms"]["notice_period_days"]) == \
        (None, False, 0)


def test_invalid_terms_are_named_field_by_field_and_nothing_is_stored(client, api, store):
    partner = api.partner()
    bad = {**TERMS, "payment_terms_days": -1, "discount_percent": "100.5", "delivery_lead_time_days": "soon",
           "minimum_order_volume": "12.3456", "currency": "euro", "effective_from": "2026-13-01",
           "auto_renew": "maybe", "notice_period_days": 1.5}
    r = client.post(f"/api/v1/partners/{partner['id']}/contracts", headers=RW, json={"title": "", "terms": bad})
    assert r.status_code == 422
    assert set(r.json["errors"]) == {"title", "terms"}
    assert set(r.json["errors"]["terms"]) == {"payment_terms_days", "discount_percent", "delivery_lead_time_days",
                                              "minimum_order_volume", "currency", "effective_from", "auto_renew",
                                              "notice_period_days"}
    backwards = client.post(f"/api/v1/partners/{partner['id']}/contracts", headers=RW, json={
        "title": "T", "terms": {**TERMS, "effective_from": "2026-06-01", "effective_to": "2026-06-01"}})
    assert backwards.status_code == 422 and set(backwards.json["errors"]["terms"]) == {"effective_to"}
    missing = client.post(f"/api/v1/partners/{partner['id']}/contracts", headers=RW, json={"title": "T"})
    assert missing.status_code == 422 and set(missing.json["errors"]) == {"terms"}
    assert store.contracts() == 0 and store.terms_versions() == 0 and store.events("crm.contract.created") == []


def test_changing_terms_makes_a_new_version_and_old_versions_stay_readable(client, api, store):
    contract = api.contract(api.partner()["id"])
    cid = contract["id"]
    r = client.post(f"/api/v1/contracts/{cid}/terms", headers=_if_match('W/"1"'), json={"payment_terms_days": 45})
    assert r.status_code == 201, r.text
    assert r.headers["ETag"] == 'W/"2"'
    assert r.headers["Location"] == f"/api/v1/contracts/{cid}/terms/2"
    assert r.json["terms_version"] == 2
    assert r.json["terms"] == {**r.json["terms"], **TERMS, "payment_terms_days": 45, "version": 2}, \
        "the terms not named are carried over"
    put = client.put(f"/api/v1/contracts/{cid}/terms", headers=_if_match('W/"2"'),
                     json={**TERMS, "payment_terms_days": 60, "discount_percent": "5", "auto_renew": False})
    assert put.status_code == 200 and put.headers["ETag"] == 'W/"3"'
    assert (put.json["terms"]["payment_terms_days"], put.json["terms"]["discount_percent"]) == (60, "5.00")

    history = client.get(f"/api/v1/contracts/{cid}/terms", headers=READ)
    assert history.status_code == 200 and history.headers["ETag"] == 'W/"3"'
    assert history.json["current_version"] == 3
    assert [(v["version"], v["payment_terms_days"], v["discount_percent"], v["auto_renew"]) for v in history.json["items"]] == [
        (3, 60, "5.00", False), (2, 45, "2.50", True), (1, 30, "2.50", True)]  # newest first
    first = client.get(f"/api/v1/contracts/{cid}/terms/1", headers=READ)
    assert first.status_code == 200 and first.json == history.json["items"][2]
    assert client.get(f"/api/v1/contracts/{cid}/terms/4", headers=READ).status_code == 404
    current = client.get(f"/api/v1/contracts/{cid}", headers=READ)
    assert current.headers["ETag"] == 'W/"3"' and current.json["terms"] == history.json["items"][0]

    changed = [e["data"] for e in store.events("crm.contract.terms_changed")]
    assert changed == [
        {"contract_id": cid, "partner_id": contract["partner_id"], "version": 2, "previous_version": 1,
         "changed": ["payment_terms_days"]},
        {"contract_id": cid, "partner_id": contract["partner_id"], "version": 3, "previous_version": 2,
         "changed": ["payment_terms_days", "discount_percent", "auto_renew"]},
    ]


def test_a_change_without_if_match_is_428_and_changes_nothing(client, api, store):
    cid = api.contract(api.partner()["id"])["id"]
    for method, body in (("post", {"payment_terms_days": 45}), ("put", TERMS)):
        for headers in (RW, {**RW, "If-Match": "  "}):
            r = getattr(client, method)(f"/api/v1/contracts/{cid}/terms", headers=headers, json=body)
            assert r.status_code == 428, r.text
            assert r.headers["Content-Type"].startswith("application/problem+json")
            assert 'W/"1"' in r.json["detail"]
    assert store.terms_versions() == 1 and store.events("crm.contract.terms_changed") == []


def test_a_stale_or_foreign_if_match_is_412_and_changes_nothing(client, api, store):
    cid = api.contract(api.partner()["id"])["id"]
    api.change_terms(cid, 1, payment_terms_days=45)
    for tag in ('W/"1"', '"1"', 'W/"7"', "not-a-tag", 'W/"1", W/"3"'):
        r = client.post(f"/api/v1/contracts/{cid}/terms", headers=_if_match(tag), json={"payment_terms_days": 90})
        assert r.status_code == 412, tag
        assert r.json["current_version"] == 2
        assert client.put(f"/api/v1/contracts/{cid}/terms", headers=_if_match(tag), json=TERMS).status_code == 412
    assert store.terms_versions() == 2
    assert client.get(f"/api/v1/contracts/{cid}", headers=READ).json["terms"]["payment_terms_days"] == 45


def test_if_match_accepts_the_current_tag_strong_or_weak_in_a_list_or_a_star(client, api):
    cid = api.contract(api.partner()["id"])["id"]
    for version, tag in ((1, '"1"'), (2, 'W/"9", W/"2"'), (3, "*")):
        r = client.post(f"/api/v1/contracts/{cid}/terms", headers=_if_match(tag), json={"payment_terms_days": 40 + version})
        assert r.status_code == 201, (tag, r.text)
        assert r.headers["ETag"] == f'W/"{version + 1}"'


def test_terms_equal_to_the_ones_in_force_make_no_new_version(client, api, store):
    cid = api.contract(api.partner()["id"])["id"]
    same = client.post(f"/api/v1/contracts/{cid}/terms", headers=_if_match('W/"1"'),
                       json={"discount_percent": "2.5", "currency": "EUR"})
    assert same.status_code == 200 and same.headers["ETag"] == 'W/"1"'
    assert client.put(f"/api/v1/contracts/{cid}/terms", headers=_if_match('W/"1"'), json=TERMS).headers["ETag"] == 'W/"1"'
    assert store.terms_versions() == 1 and store.events("crm.contract.terms_changed") == []


def test_a_change_is_checked_against_the_terms_it_keeps(client, api, store):
    cid = api.contract(api.partner()["id"])["id"]  # runs 2026-01-01 to 2026-12-31, auto-renewing
    r = client.post(f"/api/v1/contracts/{cid}/terms", headers=_if_match('W/"1"'), json={"effective_from": "2027-01-01"})
    assert r.status_code == 422 and set(r.json["errors"]) == {"effective_to"}
    r = client.post(f"/api/v1/contracts/{cid}/terms", headers=_if_match('W/"1"'), json={"effective_to": None})
    assert r.status_code == 422 and set(r.json["errors"]) == {"effective_to"}, "an auto-renewing contract needs an end"
    r = client.post(f"/api/v1/contracts/{cid}/terms", headers=_if_match('W/"1"'), json={})
    assert r.status_code == 422 and "_schema" in r.json["errors"]
    r = client.post(f"/api/v1/contracts/{cid}/terms", headers=_if_match('W/"1"'), json={"discount_percent": 101, "version": 9})
    assert r.status_code == 422 and set(r.json["errors"]) == {"discount_percent", "version"}
    r = client.put(f"/api/v1/contracts/{cid}/terms", headers=_if_match('W/"1"'), json={"payment_terms_days": 45})
    assert r.status_code == 422 and "currency" in r.json["errors"], "PUT replaces the whole set"
    assert store.terms_versions() == 1 and store.events("crm.contract.terms_changed") == []


def test_of_two_concurrent_changes_to_one_version_exactly_one_wins(app, api, store):
    cid = api.contract(api.partner()["id"])["id"]
    barrier = threading.Barrier(6)
    statuses = []

    def change(days: int):
        c = app.test_client()
        barrier.wait()
        statuses.append(c.post(f"/api/v1/contracts/{cid}/terms", headers=_if_match('W/"1"'),
                               json={"payment_terms_days": days}).status_code)

    threads = [threading.Thread(target=change, args=(50 + i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201] + [412] * 5
    assert store.terms_versions() == 2 and len(store.events("crm.contract.terms_changed")) == 1


def test_a_terminated_partner_gets_no_new_contracts_or_terms(client, api, store):
    partner = api.partner()
    cid = api.contract(partner["id"])["id"]
    assert client.patch(f"/api/v1/partners/{partner['id']}", headers=RW, json={"status": "terminated"}).status_code == 200
    r = client.post(f"/api/v1/partners/{partner['id']}/contracts", headers=RW, json={"title": "Late", "terms": TERMS})
    assert r.status_code == 409
    r = client.post(f"/api/v1/contracts/{cid}/terms", headers=_if_match('W/"1"'), json={"payment_terms_days": 45})
    assert r.status_code == 409 and r.json["current_status"] == "terminated"
    assert client.get(f"/api/v1/contracts/{cid}/terms", headers=READ).status_code == 200, "history stays readable"
    assert store.contracts() == 1 and store.terms_versions() == 1


def test_a_partners_contracts_are_listed_newest_first_with_their_current_terms(client, api):
    acme, other = api.partner(), api.partner("Other Co", "vendor")
    first = api.contract(acme["id"], title="First")
    api.contract(other["id"], title="Not Acme's")
    second = api.contract(acme["id"], title="Second")
    third = api.contract(acme["id"], title="Third")
    api.change_terms(first["id"], 1, payment_terms_days=45)
    page1 = client.get(f"/api/v1/partners/{acme['id']}/contracts?limit=2", headers=READ)
    assert page1.status_code == 200
    page2 = client.get(f"/api/v1/partners/{acme['id']}/contracts?limit=2&cursor={page1.json['next_cursor']}", headers=READ)
    items = page1.json["items"] + page2.json["items"]
    assert [c["id"] for c in items] == [third["id"], second["id"], first["id"]]
    assert page2.json["next_cursor"] is None
    assert (items[2]["terms_version"], items[2]["terms"]["payment_terms_days"], items[2]["terms"]["version"]) == (2, 45, 2)
    assert client.get(f"/api/v1/partners/{uuid.uuid4()}/contracts", headers=READ).status_code == 404


def test_all_three_events_are_in_the_outbox_as_cloudevents(client, api, store):
    partner = api.partner()
    contract = api.contract(partner["id"])
    api.change_terms(contract["id"], 1, currency="USD")
    events = store.events()
    assert [e["type"] for e in events] == ["crm.partner.created", "crm.contract.created", "crm.contract.terms_changed"]
    for e in events:
        assert e["specversion"] == "1.0" and e["source"] == "/services/partners"
        assert uuid.UUID(e["id"]) and e["time"] and e["correlationid"]
    assert [e["subject"] for e in events] == [partner["id"], contract["id"], contract["id"]]


@pytest.mark.parametrize("method, path, kwargs, status", [
    ("get", "/api/v1/contracts/not-a-uuid", {}, 404),
    ("get", "/api/v1/contracts/{missing}", {}, 404),
    ("get", "/api/v1/contracts/{missing}/terms", {}, 404),
    ("get", "/api/v1/contracts/{missing}/terms/1", {}, 404),
    ("put", "/api/v1/contracts/{missing}/terms", {"json": TERMS, "headers": {"If-Match": 'W/"1"'}}, 404),
    ("post", "/api/v1/contracts/{missing}/terms", {"json": {"currency": "USD"}, "headers": {"If-Match": 'W/"1"'}}, 404),
    ("post", "/api/v1/partners/{missing}/contracts", {"json": {"title": "T", "terms": TERMS}}, 404),
    ("delete", "/api/v1/contracts/{missing}", {}, 405),
    ("post", "/api/v1/partners/{missing}/contracts", {"data": "title=T", "content_type": "text/plain"}, 415),
    ("put", "/api/v1/contracts/{missing}/terms", {"data": "<terms/>", "content_type": "application/xml"}, 415),
])
def test_contract_errors_are_problem_details(client, store, method, path, kwargs, status):
    headers = {**RW, **kwargs.pop("headers", {})}
    r = getattr(client, method)(path.format(missing=uuid.uuid4()), headers=headers, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json["status"] == status
    assert store.contracts() == 0


def test_scopes_guard_every_contract_route(client, api, store):
    partner = api.partner()
    cid = api.contract(partner["id"])["id"]
    read_only, other = identity_headers("partners:read"), identity_headers("contacts:read", "contacts:write")
    writes = [("post", f"/api/v1/partners/{partner['id']}/contracts", {"title": "T", "terms": TERMS}),
              ("put", f"/api/v1/contracts/{cid}/terms", TERMS),
              ("post", f"/api/v1/contracts/{cid}/terms", {"payment_terms_days": 45})]
    for method, path, body in writes:
        assert getattr(client, method)(path, headers={**read_only, "If-Match": 'W/"1"'}, json=body).status_code == 403
        assert getattr(client, method)(path, headers={**other, "If-Match": 'W/"1"'}, json=body).status_code == 403
        assert getattr(client, method)(path, headers={"If-Match": 'W/"1"'}, json=body).status_code == 401
    reads = [f"/api/v1/partners/{partner['id']}/contracts", f"/api/v1/contracts/{cid}", f"/api/v1/contracts/{cid}/terms",
             f"/api/v1/contracts/{cid}/terms/1"]
    for path in reads:
        assert client.get(path, headers=read_only).status_code == 200
        assert client.get(path, headers=other).status_code == 403
        assert client.get(path).status_code == 401
    assert store.contracts() == 1 and store.terms_versions() == 1
