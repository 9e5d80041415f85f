"""A key that may write a service but not read it learns nothing it could not read (issue 7 §2).

Every write of contacts, leads, loyalty and partners answers such a caller with a receipt: the id of the record
it wrote (and the version, where the API shows one, for If-Match) — never the record, never server-computed
fields (scores, points, balances), never another record that a duplicate or a conflict ran into. A lead capture
answers 202 whether it made a lead or recorded a touch on an open one, so the status tells nothing either.
A caller that also holds the read scope gets the records, as before.
"""
from __future__ import annotations

import uuid

import pytest

from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

AT = "2026-03-14T10:30:00Z"
TERMS = {
    "payment_terms_days": 30, "discount_percent": "2.50", "delivery_lead_time_days": 14,
    "minimum_order_volume": "1000.000", "currency": "EUR", "effective_from": "2026-01-01",
    "effective_to": "2026-12-31", "auto_renew": True, "notice_period_days": 60,
}


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.json


def _says_nothing_of(response, *secrets) -> None:
    text = response.get_data(as_text=True)
    for secret in secrets:
        assert str(secret) not in text, f"{secret!r} leaked in {text}"


# -- contacts ----------------------------------------------------------------------------------------------

def test_contacts_answer_a_write_only_caller_with_receipts(service_app):
    client = service_app("contacts").test_client()
    reader = identity_headers("contacts:read", "contacts:write")
    writer = identity_headers("contacts:write")

    made = client.post("/api/v1/contacts", headers=writer, json={"email": "ann@example.com", "first_name": "Ann"})
    assert made.status_code == 201, made.text
    assert made.json == {"id": made.json["id"], "version": 1}
    assert made.headers["ETag"] == 'W/"1"' and made.headers["Location"].endswith(made.json["id"])

    for body in ({}, {"company": "Acme"}):
        patched = client.patch(f"/api/v1/contacts/{made.json['id']}", headers=writer, json=body)
        assert patched.status_code == 200, patched.text
        assert set(patched.json) == {"id", "version"} and patched.headers["ETag"]
    full = client.patch(f"/api/v1/contacts/{made.json['id']}", headers=reader, json={})
    assert full.json["first_name"] == "Ann" and full.json["company"] == "Acme"


def test_a_duplicate_contact_names_the_holder_only_to_a_reader(service_app):
    client = service_app("contacts").test_client()
    reader = identity_headers("contacts:read", "contacts:write")
    writer = identity_headers("contacts:write")
    holder = client.post("/api/v1/contacts", headers=reader,
                         json={"email": "ann@example.com", "first_name": "Ann", "phone": "+1 555 0100"}).json
    other = client.post("/api/v1/contacts", headers=reader, json={"email": "bob@example.com"}).json

    for response in (client.post("/api/v1/contacts", headers=writer, json={"email": " ANN@example.com"}),
                     client.patch(f"/api/v1/contacts/{other['id']}", headers=writer, json={"email": "ann@example.com"})):
        problem = _problem(response, 409)
        assert "existing_contact_id" not in problem
        _says_nothing_of(response, holder["id"], "Ann", "555 0100")  # not "555": a random request id may hold it

    seen = _problem(client.post("/api/v1/contacts", headers=reader, json={"email": "ann@example.com"}), 409)
    assert seen["existing_contact_id"] == holder["id"]


# -- leads -------------------------------------------------------------------------------------------------

def test_a_duplicate_lead_capture_tells_a_write_only_caller_nothing_of_the_open_lead(service_app):
    client = service_app("leads").test_client()
    reader = identity_headers("leads:read", "leads:write")
    writer = identity_headers("leads:write")
    first = client.post("/api/v1/leads", headers=reader, json={
        "email": "ada@engines.example", "first_name": "Ada", "last_name": "Lovelace", "job_title": "CTO",
        "phone": "+44 20 7946 0000", "source": "referral"}).json

    new = client.post("/api/v1/leads", headers=writer, json={"email": "grace@navy.example", "source": "web_form"})
    again = client.post("/api/v1/leads", headers=writer, json={"email": "ADA@engines.example", "source": "web_form"})

    assert (new.status_code, again.status_code) == (202, 202), (new.text, again.text)
    assert set(new.json) == set(again.json) == {"id"}
    assert again.json["id"] == first["id"]
    _says_nothing_of(again, "Ada", "Lovelace", "CTO", "7946", "referral", '"score"')
    # A reader still sees which happened and the lead it landed on.
    seen = client.post("/api/v1/leads", headers=reader, json={"email": "ada@engines.example"})
    assert seen.status_code == 200 and seen.json["first_name"] == "Ada" and seen.json["touch_count"] == 3


def test_lead_updates_and_conversions_answer_a_write_only_caller_with_receipts(service_app):
    client = service_app("leads").test_client()
    reader = identity_headers("leads:read", "leads:write")
    writer = identity_headers("leads:write")
    lead = client.post("/api/v1/leads", headers=reader, json={"email": "ada@engines.example", "job_title": "CTO"}).json

    for body in ({}, {"status": "contacted"}, {"company": "Engines Ltd"}):
        patched = client.patch(f"/api/v1/leads/{lead['id']}", headers=writer, json=body)
        assert patched.status_code == 200, patched.text
        assert patched.json == {"id": lead["id"]}

    disqualified = client.patch(f"/api/v1/leads/{lead['id']}", headers=writer, json={"status": "disqualified"})
    assert disqualified.json == {"id": lead["id"]}
    newer = client.post("/api/v1/leads", headers=reader, json={"email": "ada@engines.example"}).json
    reopened = client.patch(f"/api/v1/leads/{lead['id']}", headers=writer, json={"status": "new"})
    problem = _problem(reopened, 409)
    assert "open_lead_id" not in problem
    _says_nothing_of(reopened, newer["id"])
    assert _problem(client.patch(f"/api/v1/leads/{lead['id']}", headers=reader, json={"status": "new"}),
                    409)["open_lead_id"] == newer["id"]

    converted = client.post(f"/api/v1/leads/{newer['id']}/convert", headers=writer)
    assert converted.status_code == 202 and converted.json == {"id": newer["id"]}


# -- loyalty -----------------------------------------------------------------------------------------------

def test_loyalty_answers_a_write_only_caller_with_receipts_and_conflicts_without_figures(service_app):
    client = service_app("loyalty").test_client()
    reader = identity_headers("loyalty:read", "loyalty:write")
    writer = identity_headers("loyalty:write")
    contact_id = str(uuid.uuid4())

    member = client.post("/api/v1/loyalty/members", headers=writer, json={"contact_id": contact_id})
    assert member.status_code == 201 and member.json == {"id": member.json["id"]}
    member_id = member.json["id"]
    again = client.post("/api/v1/loyalty/members", headers=writer, json={"contact_id": contact_id})
    assert "member_id" not in _problem(again, 409)
    _says_nothing_of(again, member_id)

    body = {"member_id": member_id, "amount": "42.50", "currency": "EUR", "occurred_at": AT, "external_id": "r-1"}
    bought = client.post("/api/v1/loyalty/purchases", headers=writer, json=body)
    assert bought.status_code == 201 and bought.json == {"id": bought.json["id"]}, bought.text
    replayed = client.post("/api/v1/loyalty/purchases", headers=writer, json=body)
    assert replayed.status_code == 200 and replayed.json == bought.json
    clash = client.post("/api/v1/loyalty/purchases", headers=writer, json={**body, "amount": "1.00"})
    assert "purchase_id" not in _problem(clash, 409)
    _says_nothing_of(clash, bought.json["id"])

    spent = client.post(f"/api/v1/loyalty/members/{member_id}/redemptions", headers=writer, json={"points": 2})
    assert spent.status_code == 201 and spent.json == {"id": spent.json["id"]}, spent.text
    short = client.post(f"/api/v1/loyalty/members/{member_id}/redemptions", headers=writer, json={"points": 500})
    problem = _problem(short, 409)
    assert problem["type"].endswith("/insufficient-points")
    assert "balance" not in problem and "requested" not in problem
    _says_nothing_of(short, "40 points")  # the balance is 42 - 2 = 40
    assert "balance" in _problem(client.post(f"/api/v1/loyalty/members/{member_id}/redemptions", headers=reader,
                                             json={"points": 500}), 409)


def test_privileged_loyalty_writes_answer_an_admin_without_read_with_receipts(service_app):
    client = service_app("loyalty").test_client()
    reader = identity_headers("loyalty:read", "loyalty:write")
    admin_only = identity_headers("loyalty:admin")
    member_id = client.post("/api/v1/loyalty/members", headers=reader, json={"contact_id": str(uuid.uuid4())}).json["id"]

    adjusted = client.post(f"/api/v1/loyalty/members/{member_id}/adjustments", headers=admin_only,
                           json={"points": 10, "reason": "goodwill"})
    assert adjusted.status_code == 201 and adjusted.json == {"id": adjusted.json["id"]}, adjusted.text
    path = f"/api/v1/loyalty/members/{member_id}/transactions/{adjusted.json['id']}/reversal"
    reversed_ = client.post(path, headers=admin_only, json={"reason": "mistake"})
    assert reversed_.status_code == 201 and reversed_.json == {"id": reversed_.json["id"]}
    twice = client.post(path, headers=admin_only, json={"reason": "again"})
    assert "reversal_id" not in _problem(twice, 409)
    _says_nothing_of(twice, reversed_.json["id"])

    program = client.post("/api/v1/loyalty/programs", headers=admin_only,
                          json={"code": "gold", "name": "Gold", "currency": "EUR", "points_per_unit": "2"})
    assert program.status_code == 201 and program.json == {"id": program.json["id"]}
    changed = client.patch(f"/api/v1/loyalty/programs/{program.json['id']}", headers=admin_only, json={})
    assert changed.status_code == 200 and changed.json == {"id": program.json["id"]}


# -- partners ----------------------------------------------------------------------------------------------

def test_partners_answer_a_write_only_caller_with_receipts(service_app):
    client = service_app("partners").test_client()
    writer = identity_headers("partners:write")

    partner = client.post("/api/v1/partners", headers=writer, json={"name": "Acme", "type": "supplier"})
    assert partner.status_code == 201 and partner.json == {"id": partner.json["id"]}, partner.text
    patched = client.patch(f"/api/v1/partners/{partner.json['id']}", headers=writer, json={})
    assert patched.status_code == 200 and patched.json == {"id": partner.json["id"]}

    contract = client.post(f"/api/v1/partners/{partner.json['id']}/contracts", headers=writer,
                           json={"title": "Supply", "terms": TERMS})
    assert contract.status_code == 201, contract.text
    assert contract.json == {"id": contract.json["id"], "terms_version": 1} and contract.headers["ETag"] == 'W/"1"'
    terms = f"/api/v1/contracts/{contract.json['id']}/terms"
    changed = client.post(terms, headers={**writer, "If-Match": 'W/"1"'}, json={"payment_terms_days": 45})
    assert changed.status_code == 201 and changed.json == {"id": contract.json["id"], "terms_version": 2}
    replaced = client.put(terms, headers={**writer, "If-Match": 'W/"2"'}, json=TERMS)
    assert replaced.status_code == 200 and replaced.json == {"id": contract.json["id"], "terms_version": 3}
