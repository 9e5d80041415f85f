"""Every route of the contacts API on the real PostgreSQL, through the Flask test client."""
from __future__ import annotations

import threading
import uuid

import pytest

from services.common.identity import generate_keypair
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

BASE = "/api/v1/contacts"


def _create(client, headers, **fields):
    response = client.post(BASE, json={"email": "ann@example.com", **fields}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def _assert_problem(response, status: int):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.json["status"] == status
    return response.json


# -- identity and scopes ----------------------------------------------------------------------------------

def test_every_route_refuses_a_caller_without_an_identity(client, store):
    some_id = uuid.uuid4()
    responses = [
        client.get(BASE), client.post(BASE, json={"email": "ann@example.com"}),
        client.get(f"{BASE}/{some_id}"), client.patch(f"{BASE}/{some_id}", json={"company": "Acme"}),
    ]
    for response in responses:
        _assert_problem(response, 401)
    assert store.contact_count() == 0


def test_a_forged_identity_token_is_refused(client):
    forged = identity_headers("contacts:read", private_key=generate_keypair()[0])
    _assert_problem(client.get(BASE, headers=forged), 401)


def test_a_key_without_the_needed_scope_is_forbidden(client, rw_headers, store):
    contact = _create(client, rw_headers)
    read_only = identity_headers("contacts:read")
    write_only = identity_headers("contacts:write")
    other_service = identity_headers("leads:read", "leads:write")
    _assert_problem(client.post(BASE, json={"email": "bob@example.com"}, headers=read_only), 403)
    _assert_problem(client.patch(f"{BASE}/{contact['id']}", json={"company": "X"}, headers=read_only), 403)
    _assert_problem(client.get(BASE, headers=write_only), 403)
    _assert_problem(client.get(f"{BASE}/{contact['id']}", headers=other_service), 403)
    partner = identity_headers("contacts:read", kind="partner", partner_id=str(uuid.uuid4()))
    _assert_problem(client.get(BASE, headers=partner), 403)
    assert [c.email for c in store.contacts()] == ["ann@example.com"]
    assert store.contacts()[0].company is None


def test_the_service_wide_scope_and_admin_are_enough(client):
    for headers in (identity_headers("contacts:*"), identity_headers("admin")):
        assert client.get(BASE, headers=headers).status_code == 200


# -- create -----------------------------------------------------------------------------------------------

def test_creating_a_contact_stores_it_and_announces_it(client, rw_headers, store):
    response = client.post(BASE, json={"email": " Ann.Lee@Example.com", "first_name": "Ann", "last_name": "Lee",
                                       "company": "Acme", "job_title": "CTO", "phone": "+1 555 0100"},
                           headers=rw_headers)
    assert response.status_code == 201
    body = response.json
    assert body["email"] == "Ann.Lee@Example.com" and body["version"] == 1 and body["origin_lead_id"] is None
    assert response.headers["Location"] == f"{BASE}/{body['id']}"
    assert response.headers["ETag"] == 'W/"1"'
    [stored] = store.contacts()
    assert (str(stored.id), stored.email_normalized, stored.phone) == (body["id"], "ann.lee@example.com", "+1 555 0100")
    [event] = store.events()
    assert event["type"] == "crm.contact.created" and event["subject"] == body["id"]
    assert event["data"] == {"contact_id": body["id"], "email": "Ann.Lee@Example.com", "lead_id": None, "matched": False}
    assert event["correlationid"] == response.headers["X-Request-ID"]


def test_a_body_that_is_not_json_is_refused_with_415(client, rw_headers, store):
    response = client.post(BASE, data="email=ann@example.com", headers=rw_headers,
                           content_type="application/x-www-form-urlencoded")
    _assert_problem(response, 415)
    contact = _create(client, rw_headers)
    response = client.patch(f"{BASE}/{contact['id']}", data="company=Acme", headers=rw_headers, content_type="text/plain")
    _assert_problem(response, 415)
    assert store.contact_count() == 1 and store.contacts()[0].company is None


@pytest.mark.parametrize("body, fields", [
    ({}, {"email"}),
    ({"email": "not-an-address"}, {"email"}),
    ({"email": "ann@example.com", "first_name": "x" * 101, "phone": "call me"}, {"first_name", "phone"}),
    ({"email": "ann@example.com", "nickname": "A", "vip": True}, {"nickname", "vip"}),
    ({"email": "ann@example.com", "company": "  "}, {"company"}),
])
def test_invalid_fields_are_named_in_a_422_and_nothing_is_stored(client, rw_headers, store, body, fields):
    problem = _assert_problem(client.post(BASE, json=body, headers=rw_headers), 422)
    assert set(problem["errors"]) == fields
    assert store.contact_count() == 0 and store.events() == []


def test_a_second_contact_with_the_same_normalised_email_is_a_409_naming_the_first(client, rw_headers, store):
    first = _create(client, rw_headers)
    problem = _assert_problem(client.post(BASE, json={"email": "  ANN@example.COM"}, headers=rw_headers), 409)
    assert problem["existing_contact_id"] == first["id"]
    assert first["id"] in problem["detail"]
    assert store.contact_count() == 1 and len(store.events()) == 1


def test_the_body_is_checked_before_the_email_so_a_taken_email_with_a_bad_account_is_a_422(client, rw_headers, store):
    # The record fields are checked first, then the insert finds the e-mail's holder: the caller learns what
    # is wrong with its body before it learns that the contact exists.
    first = _create(client, rw_headers)
    body = {"email": "ann@example.com", "account_id": str(uuid.uuid4())}
    problem = _assert_problem(client.post(BASE, json=body, headers=rw_headers), 422)
    assert set(problem["errors"]) == {"account_id"}
    problem = _assert_problem(client.post(BASE, json={"email": "ann@example.com"}, headers=rw_headers), 409)
    assert problem["existing_contact_id"] == first["id"]
    assert store.contact_count() == 1 and len(store.events()) == 1


def test_concurrent_creates_with_one_email_store_exactly_one_contact(app, rw_headers, store):
    barrier = threading.Barrier(8)
    statuses, lock = [], threading.Lock()

    def create(i):
        client = app.test_client()
        barrier.wait()
        response = client.post(BASE, json={"email": "Race@Example.com", "first_name": f"R{i}"}, headers=rw_headers)
        with lock:
            statuses.append((response.status_code, response.json))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    codes = sorted(code for code, _ in statuses)
    assert codes == [201] + [409] * 7
    [winner] = [body for code, body in statuses if code == 201]
    assert {body["existing_contact_id"] for code, body in statuses if code == 409} == {winner["id"]}
    assert store.contact_count() == 1 and len(store.events("crm.contact.created")) == 1


# -- read -------------------------------------------------------------------------------------------------

def test_a_contact_is_returned_with_its_version_as_the_etag(client, rw_headers):
    contact = _create(client, rw_headers, company="Acme")
    response = client.get(f"{BASE}/{contact['id']}", headers=identity_headers("contacts:read"))
    assert response.status_code == 200
    # The single contact adds its purchase metrics, empty for a new contact, and no analytics before a snapshot.
    assert response.json == {**contact, "purchases": {"count": 0, "first_purchase_at": None, "last_purchase_at": None,
                                                      "total_spend": []}, "analytics": None}
    assert response.headers["ETag"] == 'W/"1"'


def test_an_unknown_contact_is_a_404_problem(client, rw_headers):
    missing = uuid.uuid4()
    problem = _assert_problem(client.get(f"{BASE}/{missing}", headers=rw_headers), 404)
    assert str(missing) in problem["detail"]
    _assert_problem(client.patch(f"{BASE}/{missing}", json={"company": "Acme"}, headers=rw_headers), 404)
    _assert_problem(client.get(f"{BASE}/not-a-uuid", headers=rw_headers), 404)


def test_listing_pages_newest_first_until_the_cursor_runs_out(client, rw_headers):
    created = [_create(client, rw_headers, email=f"p{i}@example.com")["id"] for i in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        response = client.get(BASE, query_string=query, headers=rw_headers)
        assert response.status_code == 200
        pages += 1
        seen += [item["id"] for item in response.json["items"]]
        cursor = response.json["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(created))


def test_a_full_last_page_has_no_next_cursor(client, rw_headers):
    for i in range(2):
        _create(client, rw_headers, email=f"p{i}@example.com")
    assert client.get(BASE, query_string={"limit": 2}, headers=rw_headers).json["next_cursor"] is None


@pytest.mark.parametrize("query, field", [({"cursor": "bm9wZQ"}, "cursor"), ({"limit": 0}, "limit"),
                                          ({"limit": "many"}, "limit"), ({"q": "x" * 201}, "q")])
def test_bad_list_arguments_are_a_422_naming_them(client, rw_headers, query, field):
    problem = _assert_problem(client.get(BASE, query_string=query, headers=rw_headers), 422)
    assert set(problem["errors"]) == {field}


def test_the_email_filter_matches_the_normalised_address_exactly(client, rw_headers):
    ann = _create(client, rw_headers, email="Ann@Example.com")
    _create(client, rw_headers, email="joann@example.com")
    _create(client, rw_headers, email="ann@example.co")
    response = client.get(BASE, query_string={"email": " ANN@example.COM "}, headers=rw_headers)
    assert [item["id"] for item in response.json["items"]] == [ann["id"]]
    assert client.get(BASE, query_string={"email": "nobody@example.com"}, headers=rw_headers).json["items"] == []


def test_q_searches_names_email_and_company_ignoring_case(client, rw_headers):
    ann = _create(client, rw_headers, email="ann@example.com", first_name="Ann", last_name="Lee", company="Globex")
    bob = _create(client, rw_headers, email="bob@acme.io", first_name="Bob", company="Initech")
    cat = _create(client, rw_headers, email="cat@example.com", last_name="Smith", company="ACME Corp")

    def found(q):
        response = client.get(BASE, query_string={"q": q}, headers=rw_headers)
        assert response.status_code == 200
        return {item["id"] for item in response.json["items"]}

    assert found("acme") == {bob["id"], cat["id"]}  # bob by e-mail, cat by company
    assert found("ann lee") == {ann["id"]}  # across first and last name
    assert found("SMITH") == {cat["id"]}
    assert found("globex") == {ann["id"]}
    assert found("%") == set()  # wildcards are literal
    assert found("zzz") == set()


def test_filters_combine_with_pagination(client, rw_headers):
    for i in range(5):
        _create(client, rw_headers, email=f"m{i}@example.com", company="Match")
    _create(client, rw_headers, email="other@example.com", company="Other")
    first = client.get(BASE, query_string={"q": "match", "limit": 3}, headers=rw_headers).json
    second = client.get(BASE, query_string={"q": "match", "limit": 3, "cursor": first["next_cursor"]},
                        headers=rw_headers).json
    emails = [i["email"] for i in first["items"] + second["items"]]
    assert emails == [f"m{i}@example.com" for i in reversed(range(5))] and second["next_cursor"] is None


# -- update -----------------------------------------------------------------------------------------------

def test_patching_changes_only_the_given_fields_and_announces_them(client, rw_headers, store):
    contact = _create(client, rw_headers, first_name="Ann", company="Acme", phone="+1 555")
    response = client.patch(f"{BASE}/{contact['id']}", json={"company": "Globex", "phone": None}, headers=rw_headers)
    assert response.status_code == 200
    body = response.json
    assert (body["first_name"], body["company"], body["phone"], body["version"]) == ("Ann", "Globex", None, 2)
    assert response.headers["ETag"] == 'W/"2"'
    assert body["updated_at"] > contact["updated_at"]
    [event] = store.events("crm.contact.updated")
    assert event["subject"] == contact["id"]
    assert event["data"] == {"contact_id": contact["id"], "changed": ["company", "phone"], "version": 2}


def test_patching_with_identical_values_changes_nothing(client, rw_headers, store):
    contact = _create(client, rw_headers, company="Acme")
    response = client.patch(f"{BASE}/{contact['id']}", json={"company": "Acme"}, headers=rw_headers)
    assert response.status_code == 200 and response.json["version"] == 1
    assert store.events("crm.contact.updated") == []


def test_patching_the_email_moves_the_unique_address(client, rw_headers, store):
    contact = _create(client, rw_headers)
    response = client.patch(f"{BASE}/{contact['id']}", json={"email": "Ann.Lee@Example.com"}, headers=rw_headers)
    assert response.status_code == 200 and response.json["email"] == "Ann.Lee@Example.com"
    assert store.contacts()[0].email_normalized == "ann.lee@example.com"
    # The old address is free again.
    assert client.post(BASE, json={"email": "ann@example.com"}, headers=rw_headers).status_code == 201


def test_patching_the_email_to_one_another_contact_holds_is_409_and_changes_nothing(client, rw_headers, store):
    ann = _create(client, rw_headers)
    bob = _create(client, rw_headers, email="bob@example.com", company="Initech")
    problem = _assert_problem(client.patch(f"{BASE}/{bob['id']}", json={"email": "ANN@example.com", "company": "X"},
                                           headers=rw_headers), 409)
    assert problem["existing_contact_id"] == ann["id"]
    stored = {c.email: (c.company, c.version) for c in store.contacts()}
    assert stored == {"ann@example.com": (None, 1), "bob@example.com": ("Initech", 1)}
    assert store.events("crm.contact.updated") == []


def test_patching_invalid_fields_is_a_422_naming_them_and_changes_nothing(client, rw_headers, store):
    contact = _create(client, rw_headers)
    problem = _assert_problem(client.patch(f"{BASE}/{contact['id']}",
                                           json={"email": None, "last_name": "", "version": 9, "company": "Acme"},
                                           headers=rw_headers), 422)
    assert set(problem["errors"]) == {"email", "last_name", "version"}
    assert store.contacts()[0].company is None and store.contacts()[0].version == 1


def test_patching_with_the_current_if_match_succeeds(client, rw_headers):
    contact = _create(client, rw_headers)
    etag = client.get(f"{BASE}/{contact['id']}", headers=rw_headers).headers["ETag"]
    response = client.patch(f"{BASE}/{contact['id']}", json={"company": "Acme"}, headers={**rw_headers, "If-Match": etag})
    assert response.status_code == 200 and response.headers["ETag"] == 'W/"2"'


def test_patching_with_a_stale_if_match_is_412_and_changes_nothing(client, rw_headers, store):
    contact = _create(client, rw_headers)
    stale = client.get(f"{BASE}/{contact['id']}", headers=rw_headers).headers["ETag"]
    assert client.patch(f"{BASE}/{contact['id']}", json={"company": "Acme"}, headers=rw_headers).status_code == 200
    for if_match in (stale, '"1"', 'W/"nonsense"'):
        problem = _assert_problem(client.patch(f"{BASE}/{contact['id']}", json={"company": "Lost update"},
                                               headers={**rw_headers, "If-Match": if_match}), 412)
        assert problem["current_version"] == 2
    assert store.contacts()[0].company == "Acme"
    assert len(store.events("crm.contact.updated")) == 1


def test_concurrent_patches_with_one_etag_let_exactly_one_win(app, rw_headers, store):
    contact = _create(app.test_client(), rw_headers)
    barrier = threading.Barrier(6)
    codes, lock = [], threading.Lock()

    def patch(i):
        client = app.test_client()
        barrier.wait()
        response = client.patch(f"{BASE}/{contact['id']}", json={"company": f"C{i}"},
                                headers={**rw_headers, "If-Match": 'W/"1"'})
        with lock:
            codes.append(response.status_code)

    threads = [threading.Thread(target=patch, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(codes) == [200] + [412] * 5
    assert store.contacts()[0].version == 2 and len(store.events("crm.contact.updated")) == 1


def test_the_openapi_document_lists_every_route(client, rw_headers):
    spec = client.get("/api/openapi.json", headers=rw_headers).json
    assert set(spec["paths"]["/api/v1/contacts"]) == {"get", "post"}
    assert set(spec["paths"]["/api/v1/contacts/{contact_id}"]) - {"parameters"} == {"get", "patch"}
    assert "412" in spec["paths"]["/api/v1/contacts/{contact_id}"]["patch"]["responses"]
