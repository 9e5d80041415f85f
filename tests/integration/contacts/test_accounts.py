"""Accounts on the real PostgreSQL: create, read with the roll-up, list, update, and contacts joining by domain."""
from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import event, select

from services.contacts import accounts, purchase_facts, service
from services.contacts.models import Account, Contact
from tests.support.auth import identity_headers
from tests.support.spend import spend_line

pytestmark = pytest.mark.integration


ACCOUNTS = "/api/v1/accounts"
CONTACTS = "/api/v1/contacts"
READ = identity_headers("contacts:read")
WRITE_ONLY = identity_headers("contacts:write")


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.json


def _account(client, headers, **fields) -> dict:
    response = client.post(ACCOUNTS, json={"name": "Acme", **fields}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def _contact(client, headers, email, **fields) -> dict:
    response = client.post(CONTACTS, json={"email": email, **fields}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def _accounts(runtime) -> list[Account]:
    with runtime.session_factory() as s:
        return list(s.scalars(select(Account).order_by(Account.seq)))


class _Statements:
    """Counts the SQL statements an engine runs while the block is open."""

    def __init__(self, engine):
        self.engine, self.sql = engine, []

    def _count(self, _conn, _cursor, statement, *_args):
        self.sql.append(statement)

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *_exc):
        event.remove(self.engine, "before_cursor_execute", self._count)


# -- scopes -------------------------------------------------------------------------------------------------

def test_account_routes_need_the_contacts_scopes(client, rw_headers, runtime):
    account = _account(client, rw_headers)
    url = f"{ACCOUNTS}/{account['id']}"
    _problem(client.post(ACCOUNTS, json={"name": "Globex"}, headers=READ), 403)
    _problem(client.patch(url, json={"name": "X"}, headers=READ), 403)
    _problem(client.post(f"{url}/tags", json={"tags": ["vip"]}, headers=READ), 403)
    _problem(client.delete(f"{url}/tags/vip", headers=READ), 403)
    _problem(client.get(ACCOUNTS, headers=WRITE_ONLY), 403)
    _problem(client.get(url, headers=WRITE_ONLY), 403)
    partner = identity_headers("contacts:read", "contacts:write", kind="partner", partner_id=str(uuid.uuid4()))
    _problem(client.get(ACCOUNTS, headers=partner), 403)
    assert [a.name for a in _accounts(runtime)] == ["Acme"]


# -- create -------------------------------------------------------------------------------------------------

def test_creating_an_account_stores_its_fields_with_the_domain_normalised(client, rw_headers, runtime):
    response = client.post(ACCOUNTS, headers=rw_headers, json={
        "name": " Bücher GmbH ", "domain": " Bücher.Example. ", "industry": "Retail", "size_band": "51-200",
        "owner": "sales@corp.example", "tags": ["Retail", "b2b", "retail"],
        "address": {"street": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "de"}})
    assert response.status_code == 201, response.json
    body = response.json
    assert (body["name"], body["domain"], body["size_band"], body["tags"], body["version"]) == \
        ("Bücher GmbH", "xn--bcher-kva.example", "51-200", ["b2b", "retail"], 1)
    assert body["address"] == {"street": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "region": None,
                               "country": "DE"}
    assert response.headers["Location"] == f"{ACCOUNTS}/{body['id']}" and response.headers["ETag"] == 'W/"1"'
    [stored] = _accounts(runtime)
    assert (str(stored.id), stored.domain, stored.country) == (body["id"], "xn--bcher-kva.example", "DE")


@pytest.mark.parametrize("body, field", [
    ({}, "name"),
    ({"name": "  "}, "name"),
    ({"name": "Acme", "domain": "gmail.com"}, "domain"),
    ({"name": "Acme", "domain": "yahoo.co.uk"}, "domain"),
    ({"name": "Acme", "domain": "https://acme.example/"}, "domain"),
    ({"name": "Acme", "domain": "ann@acme.example"}, "domain"),
    ({"name": "Acme", "domain": "localhost"}, "domain"),
    ({"name": "Acme", "size_band": "huge"}, "size_band"),
    ({"name": "Acme", "address": {"country": "XX"}}, "address"),
    ({"name": "Acme", "address": {"planet": "Mars"}}, "address"),
    ({"name": "Acme", "tags": ["no spaces"]}, "tags"),
    ({"name": "Acme", "owner": "x" * 101}, "owner"),
    ({"name": "Acme", "employees": 5}, "employees"),
])
def test_invalid_account_fields_are_a_422_naming_them_and_nothing_is_stored(client, rw_headers, runtime, body, field):
    problem = _problem(client.post(ACCOUNTS, json=body, headers=rw_headers), 422)
    assert set(problem["errors"]) == {field}
    assert _accounts(runtime) == []


def test_a_domain_another_account_has_is_a_409_naming_it_only_to_readers(client, rw_headers, runtime):
    first = _account(client, rw_headers, domain="acme.example")
    problem = _problem(client.post(ACCOUNTS, json={"name": "Acme 2", "domain": "ACME.example"}, headers=rw_headers), 409)
    assert problem["existing_account_id"] == first["id"]
    blind = _problem(client.post(ACCOUNTS, json={"name": "Acme 3", "domain": "acme.example"}, headers=WRITE_ONLY), 409)
    assert "existing_account_id" not in blind and first["id"] not in blind["detail"]
    assert len(_accounts(runtime)) == 1


def test_concurrent_creates_with_one_domain_store_one_account(app, rw_headers, runtime):
    barrier, statuses, lock = threading.Barrier(4), [], threading.Lock()

    def create(i):
        client = app.test_client()
        barrier.wait()
        response = client.post(ACCOUNTS, json={"name": f"Acme {i}", "domain": "race.example"}, headers=rw_headers)
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses) == [201, 409, 409, 409]
    assert len(_accounts(runtime)) == 1


def test_an_idempotency_key_replays_the_first_account(client, rw_headers, runtime):
    headers = {**rw_headers, "Idempotency-Key": "acct-1"}
    first = client.post(ACCOUNTS, json={"name": "Acme"}, headers=headers)
    again = client.post(ACCOUNTS, json={"name": "Acme"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert len(_accounts(runtime)) == 1


# -- contacts joining by domain -----------------------------------------------------------------------------

def test_a_new_account_takes_in_the_contacts_of_its_domain_that_have_none(client, rw_headers, store):
    other = _account(client, rw_headers, name="Other")
    ann = _contact(client, rw_headers, "Ann@ACME.example")
    quoted = _contact(client, rw_headers, '"a@b"@acme.example')
    taken = _contact(client, rw_headers, "bob@acme.example", account_id=other["id"])
    sub = _contact(client, rw_headers, "cy@sales.acme.example")
    free = _contact(client, rw_headers, "dee@gmail.com")
    account = _account(client, rw_headers, domain="acme.example")
    by_email = {c.email: c for c in store.contacts()}
    assert (by_email["Ann@ACME.example"].account_id, by_email['"a@b"@acme.example'].account_id) == \
        (uuid.UUID(account["id"]), uuid.UUID(account["id"]))
    assert by_email["Ann@ACME.example"].version == 2
    assert by_email["bob@acme.example"].account_id == uuid.UUID(other["id"])
    assert by_email["cy@sales.acme.example"].account_id is None and by_email["dee@gmail.com"].account_id is None
    updates = store.events("crm.contact.updated")
    assert sorted(e["data"]["contact_id"] for e in updates) == sorted([ann["id"], quoted["id"]])
    assert {(tuple(e["data"]["changed"]), e["data"]["version"]) for e in updates} == {(("account_id",), 2)}
    assert {taken["id"], sub["id"], free["id"]}.isdisjoint(e["data"]["contact_id"] for e in updates)


def test_a_new_contact_joins_the_account_of_its_domain_unless_it_names_one(client, rw_headers):
    account = _account(client, rw_headers, domain="acme.example")
    other = _account(client, rw_headers, name="Other")
    assert _contact(client, rw_headers, "ann@Acme.Example")["account_id"] == account["id"]
    assert _contact(client, rw_headers, "bob@acme.example", account_id=None)["account_id"] is None
    assert _contact(client, rw_headers, "cy@acme.example", account_id=other["id"])["account_id"] == other["id"]
    assert _contact(client, rw_headers, "dee@elsewhere.example")["account_id"] is None


def test_a_converted_lead_joins_the_account_of_its_domain(client, rw_headers, runtime):
    account = _account(client, rw_headers, domain="acme.example")
    results = service.create_or_match_contacts(runtime.uow(), [
        {"lead_id": uuid.uuid4(), "email": "ann@acme.example"}, {"lead_id": uuid.uuid4(), "email": "bob@gmail.com"}])
    assert [c.account_id for c, _ in results] == [uuid.UUID(account["id"]), None]


def test_an_unknown_account_id_is_a_422_naming_it(client, rw_headers, store):
    contact = _contact(client, rw_headers, "ann@example.com")
    missing = str(uuid.uuid4())
    problem = _problem(client.post(CONTACTS, json={"email": "bob@example.com", "account_id": missing},
                                   headers=rw_headers), 422)
    assert set(problem["errors"]) == {"account_id"}
    problem = _problem(client.patch(f"{CONTACTS}/{contact['id']}", json={"account_id": missing}, headers=rw_headers), 422)
    assert set(problem["errors"]) == {"account_id"}
    assert [(c.email, c.account_id, c.version) for c in store.contacts()] == [("ann@example.com", None, 1)]


def test_setting_and_clearing_a_contacts_account_announces_the_change(client, rw_headers, store):
    account = _account(client, rw_headers)
    contact = _contact(client, rw_headers, "ann@example.com")
    url = f"{CONTACTS}/{contact['id']}"
    assert client.patch(url, json={"account_id": account["id"]}, headers=rw_headers).json["account_id"] == account["id"]
    assert client.patch(url, json={"account_id": account["id"]}, headers=rw_headers).json["version"] == 2  # no change
    assert client.patch(url, json={"account_id": None}, headers=rw_headers).json["account_id"] is None
    assert [(e["data"]["changed"], e["data"]["version"]) for e in store.events("crm.contact.updated")] == \
        [(["account_id"], 2), (["account_id"], 3)]


def test_match_accounts_joins_a_batch_in_one_update_leaving_assigned_contacts_alone(client, rw_headers, runtime):
    account = _account(client, rw_headers, domain="acme.example")
    other = _account(client, rw_headers, name="Other")
    with runtime.session_factory() as s, s.begin():
        rows = [Contact(email=e, email_normalized=e, account_id=a) for e, a in
                [("ann@acme.example", None), ("bob@acme.example", uuid.UUID(other["id"])), ("cy@gmail.com", None),
                 ("dee@acme.example", None)]]
        s.add_all(rows)
    ids = [c.id for c in rows[:3]]  # dee is not in the batch
    with _Statements(runtime.engine) as statements, runtime.session_factory() as s, s.begin():
        accounts.match_accounts(s, ids)
    assert len([sql for sql in statements.sql if sql.lstrip().upper().startswith("UPDATE")]) == 1
    with runtime.session_factory() as s:
        found = {c.email: (c.account_id, c.version) for c in s.scalars(select(Contact))}
    assert found == {"ann@acme.example": (uuid.UUID(account["id"]), 2), "bob@acme.example": (uuid.UUID(other["id"]), 1),
                     "cy@gmail.com": (None, 1), "dee@acme.example": (None, 1)}


# -- read ---------------------------------------------------------------------------------------------------

def _purchase(runtime, contact_id, amount, currency, day):
    purchase_facts.record_purchase(runtime.uow(), {
        "purchase_id": uuid.uuid4(), "contact_id": uuid.UUID(contact_id), "amount": Decimal(amount),
        "currency": currency, "occurred_at": datetime(2026, 3, day, 12, tzinfo=timezone.utc)})


def test_an_account_shows_its_contacts_purchases_rolled_up_in_two_queries(client, rw_headers, runtime):
    account = _account(client, rw_headers, domain="acme.example")
    ann, bob, _cy = (_contact(client, rw_headers, f"{n}@acme.example") for n in ("ann", "bob", "cy"))
    stranger = _contact(client, rw_headers, "zed@elsewhere.example")
    _purchase(runtime, ann["id"], "0.1000", "EUR", 5)
    _purchase(runtime, ann["id"], "0.2000", "EUR", 2)
    _purchase(runtime, bob["id"], "12345678.9999", "EUR", 9)
    _purchase(runtime, bob["id"], "7", "USD", 3)
    _purchase(runtime, stranger["id"], "1000", "EUR", 1)
    with _Statements(runtime.engine) as statements:
        response = client.get(f"{ACCOUNTS}/{account['id']}", headers=READ)
    assert response.status_code == 200 and response.headers["ETag"] == 'W/"1"'
    body = response.json
    assert body["contact_count"] == 3
    assert body["purchases"] == {
        "count": 4, "first_purchase_at": "2026-03-02T12:00:00+00:00", "last_purchase_at": "2026-03-09T12:00:00+00:00",
        "total_spend": [spend_line("EUR", "12345679.2999", 3),
                        spend_line("USD", "7.0000", 1)]}
    assert [c["email"] for c in body["contacts"]["items"]] == ["cy@acme.example", "bob@acme.example", "ann@acme.example"]
    assert body["contacts"]["next_cursor"] is None
    assert len(statements.sql) == 2


def test_an_account_without_contacts_has_an_empty_roll_up(client, rw_headers):
    account = _account(client, rw_headers)
    body = client.get(f"{ACCOUNTS}/{account['id']}", headers=READ).json
    assert (body["contact_count"], body["contacts"]) == (0, {"items": [], "next_cursor": None})
    assert body["purchases"] == {"count": 0, "first_purchase_at": None, "last_purchase_at": None, "total_spend": []}


def test_the_accounts_contact_page_continues_at_the_contact_list(client, rw_headers, runtime):
    account = _account(client, rw_headers)
    with runtime.session_factory() as s, s.begin():
        s.add_all(Contact(email=f"p{i:02d}@example.com", email_normalized=f"p{i:02d}@example.com",
                          account_id=uuid.UUID(account["id"])) for i in range(53))
        s.add(Contact(email="other@example.com", email_normalized="other@example.com"))
    first = client.get(f"{ACCOUNTS}/{account['id']}", headers=READ).json["contacts"]
    assert len(first["items"]) == 50 and first["next_cursor"]
    rest = client.get(CONTACTS, query_string={"account_id": account["id"], "cursor": first["next_cursor"]},
                      headers=READ).json
    emails = [c["email"] for c in first["items"] + rest["items"]]
    assert emails == [f"p{i:02d}@example.com" for i in reversed(range(53))] and rest["next_cursor"] is None


def test_an_unknown_account_is_a_404(client, rw_headers):
    missing = uuid.uuid4()
    _problem(client.get(f"{ACCOUNTS}/{missing}", headers=READ), 404)
    _problem(client.patch(f"{ACCOUNTS}/{missing}", json={"name": "X"}, headers=rw_headers), 404)
    _problem(client.post(f"{ACCOUNTS}/{missing}/tags", json={"tags": ["vip"]}, headers=rw_headers), 404)


# -- list ---------------------------------------------------------------------------------------------------

def test_accounts_are_listed_by_tags_domain_and_search_term(client, rw_headers):
    acme = _account(client, rw_headers, name="Acme Corp", domain="acme.example", tags=["vip", "b2b"])
    globex = _account(client, rw_headers, name="Globex", domain="globex.example", tags=["vip"])
    initech = _account(client, rw_headers, name="Initech", tags=["b2b"])

    def ids(**query):
        response = client.get(ACCOUNTS, query_string=query, headers=READ)
        assert response.status_code == 200, response.json
        return [a["id"] for a in response.json["items"]]

    assert ids() == [initech["id"], globex["id"], acme["id"]]
    assert ids(tag="VIP") == [globex["id"], acme["id"]]
    assert ids(tag=["vip", "b2b"]) == [acme["id"]]
    assert ids(domain="ACME.example") == [acme["id"]]
    assert ids(domain="gmail.com") == []
    assert ids(q="glob") == [globex["id"]] and ids(q="ACME.EX") == [acme["id"]]
    assert ids(sort="name") == [acme["id"], globex["id"], initech["id"]]
    assert ids(sort="-domain") == [globex["id"], acme["id"], initech["id"]]  # no domain: last
    page = client.get(ACCOUNTS, query_string={"limit": 2, "sort": "name"}, headers=READ).json
    rest = client.get(ACCOUNTS, query_string={"limit": 2, "sort": "name", "cursor": page["next_cursor"]},
                      headers=READ).json
    assert [a["id"] for a in page["items"] + rest["items"]] == [acme["id"], globex["id"], initech["id"]]


@pytest.mark.parametrize("query, field", [({"tag": "no spaces"}, "tag"), ({"domain": "not a domain"}, "domain"),
                                          ({"sort": "owner"}, "sort"), ({"limit": 0}, "limit")])
def test_bad_account_list_arguments_are_a_422_naming_them(client, query, field):
    problem = _problem(client.get(ACCOUNTS, query_string=query, headers=READ), 422)
    assert set(problem["errors"]) == {field}


# -- update -------------------------------------------------------------------------------------------------

def test_patching_an_account_changes_only_what_is_sent(client, rw_headers):
    account = _account(client, rw_headers, industry="Retail",
                       address={"street": "Main St 1", "city": "Springfield", "country": "US"})
    url = f"{ACCOUNTS}/{account['id']}"
    response = client.patch(url, json={"name": "Acme Inc", "address": {"city": "Shelbyville", "region": "IL"}},
                            headers={**rw_headers, "If-Match": 'W/"1"'})
    assert response.status_code == 200 and response.headers["ETag"] == 'W/"2"'
    body = response.json
    assert (body["name"], body["industry"], body["version"]) == ("Acme Inc", "Retail", 2)
    assert body["address"] == {"street": "Main St 1", "city": "Shelbyville", "postal_code": None, "region": "IL",
                               "country": "US"}
    assert client.patch(url, json={"name": "Acme Inc"}, headers=rw_headers).json["version"] == 2  # nothing changed
    cleared = client.patch(url, json={"address": None, "industry": None}, headers=rw_headers).json
    assert set(cleared["address"].values()) == {None} and cleared["industry"] is None and cleared["version"] == 3
    _problem(client.patch(url, json={"name": "Stale"}, headers={**rw_headers, "If-Match": 'W/"1"'}), 412)
    _problem(client.patch(url, json={"name": None}, headers=rw_headers), 422)


def test_giving_an_account_a_domain_takes_in_its_contacts_and_a_taken_domain_is_a_409(client, rw_headers, store):
    holder = _account(client, rw_headers, name="Holder", domain="taken.example")
    account = _account(client, rw_headers)
    ann = _contact(client, rw_headers, "ann@acme.example")
    url = f"{ACCOUNTS}/{account['id']}"
    problem = _problem(client.patch(url, json={"domain": "Taken.Example"}, headers=rw_headers), 409)
    assert problem["existing_account_id"] == holder["id"]
    assert client.patch(url, json={"domain": "acme.example"}, headers=rw_headers).json["domain"] == "acme.example"
    assert client.get(f"{CONTACTS}/{ann['id']}", headers=READ).json["account_id"] == account["id"]
    [joined] = store.events("crm.contact.updated")
    assert joined["data"] == {"contact_id": ann["id"], "changed": ["account_id"], "version": 2}


def test_a_write_only_key_gets_a_receipt_not_the_account(client, rw_headers):
    response = client.post(ACCOUNTS, json={"name": "Acme"}, headers=WRITE_ONLY)
    assert response.status_code == 201 and set(response.json) == {"id", "version"}
    response = client.patch(f"{ACCOUNTS}/{response.json['id']}", json={"name": "Acme 2"}, headers=WRITE_ONLY)
    assert response.status_code == 200 and response.json["version"] == 2 and set(response.json) == {"id", "version"}

