"""A contact's invoice payments and fraud flags on the real PostgreSQL: record, list, pay, flag, clear, their
events, refusals, scopes, and what a merge does with them."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

BASE = "/api/v1/contacts"
TODAY = datetime.now(UTC).date()


@pytest.fixture(autouse=True)
def _today_is_fixed(monkeypatch):
    # The service's "today" is the one the expected dates are built from, even when UTC midnight passes between
    # loading this module and running its tests.
    from services.contacts import payments
    monkeypatch.setattr(payments, "utc_today", lambda: TODAY)


def _day(days: int) -> str:
    return (TODAY + timedelta(days=days)).isoformat()


def _invoice(ref: str = "INV-1", **extra) -> dict:
    return {"invoice_reference": ref, "amount": "120.50", "currency": "EUR", "due_on": _day(-30), **extra}


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.json


def _timeline(client, headers, contact_id: str, kind: str) -> list[dict]:
    response = client.get(f"{BASE}/{contact_id}/timeline?kind={kind}", headers=headers)
    assert response.status_code == 200, response.json
    return response.json["items"]


def _contact(client, headers, email="ann@example.com") -> str:
    response = client.post(BASE, json={"email": email}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["id"]


@pytest.fixture
def contact_id(client, rw_headers) -> str:
    return _contact(client, rw_headers)


def test_an_invoice_is_recorded_once_listed_by_lateness_and_paid_later(client, rw_headers, contact_id, store):
    url = f"{BASE}/{contact_id}/payments"
    made = client.post(url, json=_invoice(), headers=rw_headers)
    assert made.status_code == 201, made.json
    body = made.json
    assert made.headers["Location"] == f"{url}/{body['id']}" and made.headers["ETag"] == 'W/"1"'
    assert {k: body[k] for k in ("contact_id", "invoice_reference", "amount", "currency", "due_on", "paid_on", "late",
                                 "days_late", "recorded_by", "version")} == {
        "contact_id": contact_id, "invoice_reference": "INV-1", "amount": "120.5000", "currency": "EUR",
        "due_on": _day(-30), "paid_on": None, "late": True, "days_late": 30, "recorded_by": "test-key", "version": 1}
    early = client.post(url, json=_invoice("INV-2", paid_on=_day(-31)), headers=rw_headers).json
    assert (early["late"], early["days_late"]) == (False, 0), "paid before it was due"

    again = _problem(client.post(url, json=_invoice(amount="99"), headers=rw_headers), 409)
    assert "INV-1" in again["detail"] and again["invoice_reference"] == "INV-1"
    replayed = [client.post(url, json=_invoice("INV-3"), headers={**rw_headers, "Idempotency-Key": "k1"})
                for _ in range(2)]
    assert [r.status_code for r in replayed] == [201, 201] and replayed[0].json == replayed[1].json

    late = client.get(f"{url}?late=true", headers=rw_headers).json["items"]
    assert [p["invoice_reference"] for p in late] == ["INV-3", "INV-1"]
    punctual = client.get(f"{url}?late=false", headers=rw_headers).json["items"]
    assert [p["invoice_reference"] for p in punctual] == ["INV-2"]
    first = client.get(f"{url}?limit=2&sort=due_on", headers=rw_headers).json
    rest = client.get(f"{url}?limit=2&sort=due_on&cursor={first['next_cursor']}", headers=rw_headers).json
    assert len(first["items"]) + len(rest["items"]) == 3 and rest["next_cursor"] is None

    one = f"{url}/{body['id']}"
    _problem(client.patch(one, json={"paid_on": _day(-25)}, headers={**rw_headers, "If-Match": 'W/"7"'}), 412)
    paid = client.patch(one, json={"paid_on": _day(-25)}, headers={**rw_headers, "If-Match": 'W/"1"'})
    assert paid.status_code == 200 and paid.headers["ETag"] == 'W/"2"'
    assert (paid.json["paid_on"], paid.json["late"], paid.json["days_late"]) == (_day(-25), True, 5)
    assert client.patch(one, json={"paid_on": _day(-25)}, headers=rw_headers).json["version"] == 2, "no change"
    assert client.get(one, headers=rw_headers).json["paid_on"] == _day(-25)

    events = [e["data"] for e in store.events("crm.payment.recorded")]
    assert [(e["invoice_reference"], e["paid_on"]) for e in events] == [
        ("INV-1", None), ("INV-2", _day(-31)), ("INV-3", None), ("INV-1", _day(-25))]
    assert events[0]["amount"] == "120.5000" and events[0]["due_on"] == _day(-30)
    assert all(e["contact_id"] == contact_id for e in events)

    entries = _timeline(client, rw_headers, contact_id, "payment")
    assert {e["id"]: e["summary"] for e in entries} == {
        body["id"]: f"Invoice INV-1: 120.50 EUR due {_day(-30)}, paid {_day(-25)} (5 days late)",
        early["id"]: f"Invoice INV-2: 120.50 EUR due {_day(-30)}, paid {_day(-31)} (on time)",
        replayed[0].json["id"]: f"Invoice INV-3: 120.50 EUR due {_day(-30)}, unpaid"}, "one entry each, refreshed"
    assert {k: entries[-1]["data"][k] for k in ("invoice_reference", "amount", "paid_on", "days_late")} == {
        "invoice_reference": "INV-1", "amount": "120.5000", "paid_on": _day(-25), "days_late": 5}
    assert (entries[-1]["source"], entries[-1]["contact_id"]) == ("contacts", contact_id)


def test_invalid_payments_and_flags_are_422s_naming_the_fields(client, rw_headers, contact_id, store):
    cases = [
        ({"amount": "0"}, {"amount"}), ({"amount": "-5"}, {"amount"}), ({"amount": "1.00001"}, {"amount"}),
        ({"amount": "NaN", "currency": "eur"}, {"amount", "currency"}),
        ({"due_on": "1899-12-31", "paid_on": "1850-01-01"}, {"due_on", "paid_on"}),
        ({"paid_on": _day(5)}, {"paid_on"}), ({"invoice_reference": " "}, {"invoice_reference"}),
        ({"payee": "x"}, {"payee"}),
    ]
    for change, fields in cases:
        problem = _problem(client.post(f"{BASE}/{contact_id}/payments", json=_invoice(**change), headers=rw_headers),
                           422)
        assert set(problem["errors"]) == fields, change
    flags = f"{BASE}/{contact_id}/fraud-flags"
    for body, fields in (({"code": "Stolen Card", "reason": "x"}, {"code"}), ({"code": "chargeback"}, {"reason"}),
                         ({"code": "chargeback", "reason": "x" * 1001}, {"reason"})):
        assert set(_problem(client.post(flags, json=body, headers=rw_headers), 422)["errors"]) == fields
    assert store.events("crm.payment.recorded") == [] and store.events("crm.contact.flagged") == []


def test_a_flag_is_active_until_cleared_once_with_a_reason(client, rw_headers, contact_id, store):
    url = f"{BASE}/{contact_id}/fraud-flags"
    made = client.post(url, json={"code": "chargeback", "reason": "Two charges disputed"}, headers=rw_headers)
    assert made.status_code == 201, made.json
    flag = made.json
    assert made.headers["Location"] == f"{url}/{flag['id']}"
    assert (flag["code"], flag["active"], flag["flagged_by"], flag["cleared_at"]) == ("chargeback", True, "test-key",
                                                                                     None)
    other = client.post(url, json={"code": "stolen_card", "reason": "Card reported"}, headers=rw_headers).json
    assert [f["id"] for f in client.get(f"{url}?active=true", headers=rw_headers).json["items"]] == [other["id"],
                                                                                                     flag["id"]]
    clear = f"{url}/{flag['id']}/clear"
    _problem(client.post(clear, json={}, headers=rw_headers), 422)
    cleared = client.post(clear, json={"reason": "The bank confirmed the charges"}, headers=rw_headers)
    assert cleared.status_code == 200, cleared.json
    assert (cleared.json["active"], cleared.json["cleared_by"], cleared.json["clear_reason"]) == (
        False, "test-key", "The bank confirmed the charges")
    _problem(client.post(clear, json={"reason": "again"}, headers=rw_headers), 409)
    assert [f["id"] for f in client.get(f"{url}?active=true", headers=rw_headers).json["items"]] == [other["id"]]
    assert [f["id"] for f in client.get(f"{url}?active=false", headers=rw_headers).json["items"]] == [flag["id"]]
    assert client.get(f"{url}/{flag['id']}", headers=rw_headers).json["active"] is False
    events = [e["data"] for e in store.events("crm.contact.flagged")]
    assert [(e["flag_id"], e["code"], e["cleared"]) for e in events] == [
        (flag["id"], "chargeback", False), (other["id"], "stolen_card", False), (flag["id"], "chargeback", True)]
    assert "reason" not in events[0], "the reasons stay in the contacts service"
    entries = {e["id"]: e for e in _timeline(client, rw_headers, contact_id, "fraud_flag")}
    assert {i: e["summary"] for i, e in entries.items()} == {
        flag["id"]: "Fraud flag chargeback cleared: The bank confirmed the charges",
        other["id"]: "Fraud flag stolen_card: Card reported"}, "one entry per flag, refreshed when cleared"
    cleared_data = entries[flag["id"]]["data"]
    assert (cleared_data["status"], cleared_data["reason"], cleared_data["clear_reason"]) == (
        "cleared", "Two charges disputed", "The bank confirmed the charges")
    assert (entries[other["id"]]["data"]["status"], entries[other["id"]]["data"]["cleared_at"]) == ("active", None)


def test_unknown_contacts_payments_and_flags_are_404s(client, rw_headers, contact_id):
    nobody = f"{BASE}/{uuid.uuid4()}"
    _problem(client.post(f"{nobody}/payments", json=_invoice(), headers=rw_headers), 404)
    _problem(client.get(f"{nobody}/payments", headers=rw_headers), 404)
    _problem(client.post(f"{nobody}/fraud-flags", json={"code": "x", "reason": "y"}, headers=rw_headers), 404)
    _problem(client.get(f"{nobody}/fraud-flags", headers=rw_headers), 404)
    mine = f"{BASE}/{contact_id}"
    assert client.get(f"{mine}/payments", headers=rw_headers).json == {"items": [], "next_cursor": None}
    _problem(client.patch(f"{mine}/payments/{uuid.uuid4()}", json={"paid_on": None}, headers=rw_headers), 404)
    _problem(client.get(f"{mine}/fraud-flags/{uuid.uuid4()}", headers=rw_headers), 404)
    _problem(client.post(f"{mine}/fraud-flags/{uuid.uuid4()}/clear", json={"reason": "x"}, headers=rw_headers), 404)


def test_reading_needs_contacts_read_and_writing_contacts_write(client, rw_headers, contact_id):
    reader, writer = identity_headers("contacts:read"), identity_headers("contacts:write")
    payments, flags = f"{BASE}/{contact_id}/payments", f"{BASE}/{contact_id}/fraud-flags"
    _problem(client.post(payments, json=_invoice(), headers=reader), 403)
    _problem(client.post(flags, json={"code": "x", "reason": "y"}, headers=reader), 403)
    made = client.post(payments, json=_invoice(), headers=writer)
    assert made.status_code == 201 and made.json == {"id": made.json["id"], "version": 1}, "a receipt only"
    flag = client.post(flags, json={"code": "x", "reason": "y"}, headers=writer)
    assert flag.status_code == 201 and flag.json == {"id": flag.json["id"]}
    refused = _problem(client.post(payments, json=_invoice(), headers=writer), 409)
    assert "INV-1" not in str(refused), "a write-only key learns nothing it could not read"
    for url in (payments, flags, f"{payments}/{made.json['id']}", f"{flags}/{flag.json['id']}"):
        _problem(client.get(url, headers=writer), 403)
        assert client.get(url, headers=reader).status_code == 200
    _problem(client.patch(f"{payments}/{made.json['id']}", json={"paid_on": None}, headers=reader), 403)
    _problem(client.post(f"{flags}/{flag.json['id']}/clear", json={"reason": "z"}, headers=reader), 403)
    assert client.get(f"{BASE}/{contact_id}", headers=reader).json["status"] == "active"


def test_a_merge_moves_payments_and_flags_keeping_the_survivors_copy_of_a_shared_invoice(client, rw_headers):
    survivor, merged = _contact(client, rw_headers), _contact(client, rw_headers, "ann.lee@example.com")
    client.post(f"{BASE}/{survivor}/payments", json=_invoice("INV-1", amount="10"), headers=rw_headers)
    for ref in ("INV-1", "INV-2"):
        client.post(f"{BASE}/{merged}/payments", json=_invoice(ref, amount="20"), headers=rw_headers)
    client.post(f"{BASE}/{merged}/fraud-flags", json={"code": "chargeback", "reason": "y"}, headers=rw_headers)
    merge = client.post("/api/v1/contacts/merges", json={"survivor_id": survivor, "merged_id": merged},
                        headers=identity_headers("contacts:read", "contacts:merge"))
    assert merge.status_code == 200, merge.json
    assert (merge.json["moved"]["contact_payments"], merge.json["moved"]["contact_fraud_flags"]) == (1, 1)
    payments = client.get(f"{BASE}/{survivor}/payments?sort=due_on", headers=rw_headers).json["items"]
    assert sorted((p["invoice_reference"], p["amount"]) for p in payments) == [("INV-1", "10.0000"),
                                                                               ("INV-2", "20.0000")]
    assert len(client.get(f"{BASE}/{survivor}/fraud-flags", headers=rw_headers).json["items"]) == 1
    assert sorted(e["summary"].split(" due ")[0] for e in _timeline(client, rw_headers, survivor, "payment")) == [
        "Invoice INV-1: 10.00 EUR", "Invoice INV-2: 20.00 EUR"], "the dropped copy's entry goes with it"
