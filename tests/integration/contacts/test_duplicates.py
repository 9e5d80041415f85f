"""Duplicate candidates on the real PostgreSQL: blocking keys in SQL, E.164 phones, scores, paging, bounds."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import update

from services.common.emails import normalize_email
from services.contacts import duplicates
from services.contacts.models import Contact
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

BASE = "/api/v1/contacts"
DUPLICATES = f"{BASE}/duplicates"
HEADERS = identity_headers("contacts:read", "contacts:write")
ACCOUNT = uuid.uuid4()

PEOPLE = [
    # (email, fields)
    ("ann.lee@gmail.com", {"first_name": "Ann", "last_name": "Lee"}),
    ("annlee+crm@googlemail.com", {}),
    ("bob@example.com", {}),
    ("bob+news@example.com", {}),
    ("carl@a.example", {"phone": "+49 30 1234567"}),
    ("carl.k@b.example", {"phone": "030 1234567"}),
    ("dora@x.example", {"phone": "040 7654321"}),
    ("dora2@y.example", {"phone": "(040) 765-4321"}),
    ("eve@one.example", {"first_name": "Eve", "last_name": "Stone"}),
    ("eve.stone@two.example", {"first_name": "eve", "last_name": "STONE "}),
    ("fay@acme.example", {"first_name": "Fay", "last_name": "Wong", "company": "Acme"}),
    ("f.wong@acme-corp.example", {"first_name": "Fay", "last_name": "Wong", "company": "ACME"}),
    ("gus.grey@one.example", {"first_name": "Gus", "last_name": "Grey"}),
    ("gus.grey@two.example", {"first_name": "Gus", "last_name": "Grey"}),
    ("info@a.example", {}),
    ("info@b.example", {}),
    ("hal@x.example", {"first_name": "Hal", "last_name": "Lee"}),
]
# Without a default region: the + number and the national one cannot be compared (Carl is not a pair).
EXPECTED = [
    ({"ann.lee@gmail.com", "annlee+crm@googlemail.com"}, 95, ["same_gmail_address"]),
    ({"bob@example.com", "bob+news@example.com"}, 90, ["same_address_without_tag"]),
    ({"dora@x.example", "dora2@y.example"}, 80, ["same_phone"]),
    ({"eve@one.example", "eve.stone@two.example"}, 75, ["same_name_and_account"]),
    ({"fay@acme.example", "f.wong@acme-corp.example"}, 70, ["same_name_and_company"]),
    ({"gus.grey@one.example", "gus.grey@two.example"}, 61, ["same_local_part", "same_name"]),
]


def _seed(client, runtime) -> dict[str, str]:
    ids = {}
    for email, fields in PEOPLE:
        response = client.post(BASE, json={"email": email, **fields}, headers=HEADERS)
        assert response.status_code == 201, response.json
        ids[email] = response.json["id"]
    with runtime.session_factory() as s, s.begin():
        s.execute(update(Contact).where(Contact.email_normalized.in_(["eve@one.example", "eve.stone@two.example"]))
                  .values(account_id=ACCOUNT))
    return ids


def _summary(items) -> list:
    return [({c["email"] for c in item["contacts"]}, item["score"], [r["code"] for r in item["reasons"]])
            for item in items]


def _all_pages(client, limit: int, **query) -> list:
    items, cursor, pages = [], None, 0
    while True:
        args = {"limit": limit, **query, **({"cursor": cursor} if cursor else {})}
        response = client.get(DUPLICATES, query_string=args, headers=HEADERS)
        assert response.status_code == 200, response.json
        items += response.json["items"]
        pages += 1
        cursor = response.json["next_cursor"]
        if cursor is None:
            return items, pages


def test_candidates_are_found_by_shared_keys_and_listed_best_first(client, runtime):
    ids = _seed(client, runtime)
    response = client.get(DUPLICATES, headers=HEADERS)
    assert response.status_code == 200
    assert _summary(response.json["items"]) == EXPECTED
    assert response.json["next_cursor"] is None
    first = response.json["items"][0]
    # The older record first, with the values the two share.
    assert [c["id"] for c in first["contacts"]] == [ids["ann.lee@gmail.com"], ids["annlee+crm@googlemail.com"]]
    assert first["reasons"] == [{"code": "same_gmail_address", "weight": 95, "value": "annlee@gmail.com"}]
    dora = response.json["items"][2]["reasons"]
    assert dora == [{"code": "same_phone", "weight": 80, "value": "0407654321"}]


def test_with_a_default_region_national_numbers_match_international_ones(service_app):
    app = service_app("contacts", CRM_DEFAULT_PHONE_REGION="de")
    client = app.test_client()
    _seed(client, app.extensions["crm.runtime"])
    summary = _summary(client.get(DUPLICATES, headers=HEADERS).json["items"])
    carl = ({"carl@a.example", "carl.k@b.example"}, 80, ["same_phone"])
    assert carl in summary and len(summary) == len(EXPECTED) + 1
    items = client.get(DUPLICATES, headers=HEADERS).json["items"]
    phones = sorted(item["reasons"][0]["value"] for item in items if item["reasons"][0]["code"] == "same_phone")
    assert phones == ["+49301234567", "+49407654321"]


def test_pages_follow_each_other_until_the_cursor_runs_out(client, runtime):
    _seed(client, runtime)
    items, pages = _all_pages(client, limit=4)
    assert pages == 2 and _summary(items) == EXPECTED
    items, pages = _all_pages(client, limit=1)
    assert pages == len(EXPECTED) and _summary(items) == EXPECTED
    exact = client.get(DUPLICATES, query_string={"limit": len(EXPECTED)}, headers=HEADERS).json
    assert exact["next_cursor"] is None


def test_one_contacts_candidates(client, runtime):
    ids = _seed(client, runtime)
    response = client.get(DUPLICATES, query_string={"contact_id": ids["bob+news@example.com"]}, headers=HEADERS)
    assert _summary(response.json["items"]) == [EXPECTED[1]]
    alone = client.get(DUPLICATES, query_string={"contact_id": ids["hal@x.example"]}, headers=HEADERS)
    assert alone.status_code == 200 and alone.json == {"items": [], "next_cursor": None}
    unknown = client.get(DUPLICATES, query_string={"contact_id": str(uuid.uuid4())}, headers=HEADERS)
    assert unknown.status_code == 404 and unknown.mimetype == "application/problem+json"


@pytest.mark.parametrize("query, field", [({"cursor": "bm90LWEtY3Vyc29y"}, "cursor"), ({"cursor": "%%%"}, "cursor"),
                                          ({"contact_id": "x"}, "contact_id"), ({"limit": 0}, "limit")])
def test_bad_arguments_are_a_422_naming_them(client, query, field):
    response = client.get(DUPLICATES, query_string=query, headers=HEADERS)
    assert response.status_code == 422 and field in response.json["errors"]


def test_a_key_shared_by_too_many_contacts_is_no_evidence(client, runtime):
    with runtime.session_factory() as s, s.begin():
        for i in range(duplicates.MAX_BLOCK + 1):
            email = f"person{i}@company{i}.example"
            s.add(Contact(id=uuid.uuid4(), email=email, email_normalized=normalize_email(email), first_name="John",
                          last_name="Smith", company="Big Corp"))
        # Two of them also share a phone: that block is small, so it still counts.
        for i in (0, 1):
            s.execute(update(Contact).where(Contact.email_normalized == f"person{i}@company{i}.example")
                      .values(phone="+44 20 7946 0958"))
    items = client.get(DUPLICATES, headers=HEADERS).json["items"]
    assert _summary(items) == [({"person0@company0.example", "person1@company1.example"}, 87,
                                ["same_phone", "same_name"])]
