"""Tags on contacts and accounts on the real PostgreSQL: add, remove, filter by, and what each announces."""
from __future__ import annotations

import pytest

from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

CONTACTS = "/api/v1/contacts"
ACCOUNTS = "/api/v1/accounts"
READ = identity_headers("contacts:read")


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.json


def _contact(client, headers, email="ann@example.com", **fields) -> dict:
    response = client.post(CONTACTS, json={"email": email, **fields}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def _ids(client, url, **query) -> list[str]:
    response = client.get(url, query_string=query, headers=READ)
    assert response.status_code == 200, response.json
    return [item["id"] for item in response.json["items"]]


def test_adding_tags_normalises_them_and_announces_only_a_change(client, rw_headers, store):
    contact = _contact(client, rw_headers)
    url = f"{CONTACTS}/{contact['id']}/tags"
    response = client.post(url, json={"tags": [" VIP ", "b2b", "vip", "tier:gold"]}, headers=rw_headers)
    assert response.status_code == 200 and response.headers["ETag"] == 'W/"2"'
    assert (response.json["tags"], response.json["version"]) == (["b2b", "tier:gold", "vip"], 2)
    again = client.post(url, json={"tags": ["VIP"]}, headers=rw_headers)
    assert (again.json["tags"], again.json["version"]) == (["b2b", "tier:gold", "vip"], 2)
    assert [e["data"] for e in store.events("crm.contact.updated")] == [
        {"contact_id": contact["id"], "changed": ["tags"], "version": 2}]
    assert store.contacts()[0].tags == ["b2b", "tier:gold", "vip"]


def test_removing_a_tag_changes_the_contact_only_when_it_had_it(client, rw_headers, store):
    contact = _contact(client, rw_headers, tags=["vip", "b2b"])
    url = f"{CONTACTS}/{contact['id']}/tags"
    response = client.delete(f"{url}/VIP", headers=rw_headers)
    assert (response.status_code, response.json["tags"], response.json["version"]) == (200, ["b2b"], 2)
    response = client.delete(f"{url}/vip", headers=rw_headers)
    assert (response.status_code, response.json["tags"], response.json["version"]) == (200, ["b2b"], 2)
    assert [e["data"]["changed"] for e in store.events("crm.contact.updated")] == [["tags"]]


@pytest.mark.parametrize("body, field", [
    ({"tags": ["has space"]}, "tags"), ({"tags": ["-leading-dash"]}, "tags"), ({"tags": ["x" * 51]}, "tags"),
    ({"tags": []}, "tags"), ({"tags": "vip"}, "tags"), ({}, "tags"), ({"tags": ["vip"], "extra": 1}, "extra"),
])
def test_bad_tags_are_a_422_naming_the_field_and_change_nothing(client, rw_headers, store, body, field):
    contact = _contact(client, rw_headers)
    problem = _problem(client.post(f"{CONTACTS}/{contact['id']}/tags", json=body, headers=rw_headers), 422)
    assert set(problem["errors"]) == {field}
    assert (store.contacts()[0].tags, store.contacts()[0].version) == ([], 1)


def test_a_contact_holds_at_most_100_tags(client, rw_headers, store):
    contact = _contact(client, rw_headers, tags=[f"t{i}" for i in range(99)])
    url = f"{CONTACTS}/{contact['id']}/tags"
    assert len(client.post(url, json={"tags": ["t0", "one-more"]}, headers=rw_headers).json["tags"]) == 100
    problem = _problem(client.post(url, json={"tags": ["too-many"]}, headers=rw_headers), 422)
    assert set(problem["errors"]) == {"tags"}
    assert len(store.contacts()[0].tags) == 100
    _problem(client.post(CONTACTS, json={"email": "b@example.com", "tags": [f"t{i}" for i in range(101)]},
                         headers=rw_headers), 422)


def test_an_invalid_tag_in_the_path_is_a_422_and_an_unknown_contact_a_404(client, rw_headers):
    contact = _contact(client, rw_headers)
    problem = _problem(client.delete(f"{CONTACTS}/{contact['id']}/tags/no%20spaces", headers=rw_headers), 422)
    assert set(problem["errors"]) == {"tag"}
    _problem(client.post(f"{CONTACTS}/00000000-0000-4000-8000-000000000000/tags", json={"tags": ["vip"]},
                         headers=rw_headers), 404)


def test_tag_routes_need_contacts_write_and_honour_if_match(client, rw_headers):
    contact = _contact(client, rw_headers)
    url = f"{CONTACTS}/{contact['id']}/tags"
    _problem(client.post(url, json={"tags": ["vip"]}, headers=READ), 403)
    _problem(client.delete(f"{url}/vip", headers=READ), 403)
    _problem(client.post(url, json={"tags": ["vip"]}, headers={**rw_headers, "If-Match": 'W/"7"'}), 412)
    assert client.post(url, json={"tags": ["vip"]}, headers={**rw_headers, "If-Match": 'W/"1"'}).status_code == 200
    receipt = client.delete(f"{url}/vip", headers=identity_headers("contacts:write")).json
    assert receipt == {"id": contact["id"], "version": 3}


def test_tags_are_set_on_create_and_replaced_by_patch(client, rw_headers, store):
    contact = _contact(client, rw_headers, tags=["B2B", "vip", "b2b"])
    assert contact["tags"] == ["b2b", "vip"]
    url = f"{CONTACTS}/{contact['id']}"
    assert client.patch(url, json={"tags": ["vip", "b2b"]}, headers=rw_headers).json["version"] == 1  # same set
    patched = client.patch(url, json={"tags": ["lead"]}, headers=rw_headers).json
    assert (patched["tags"], patched["version"]) == (["lead"], 2)
    assert client.patch(url, json={"tags": []}, headers=rw_headers).json["tags"] == []
    assert [e["data"]["changed"] for e in store.events("crm.contact.updated")] == [["tags"], ["tags"]]


def test_the_tag_filter_finds_contacts_with_all_the_tags_given(client, rw_headers):
    both = _contact(client, rw_headers, "a@example.com", tags=["vip", "b2b"])
    vip = _contact(client, rw_headers, "b@example.com", tags=["vip"])
    _contact(client, rw_headers, "c@example.com", tags=["b2b", "vipx"])
    assert _ids(client, CONTACTS, tag="VIP") == [vip["id"], both["id"]]
    assert _ids(client, CONTACTS, tag=["vip", "b2b"]) == [both["id"]]
    assert _ids(client, CONTACTS, tag="nobody") == []
    assert _ids(client, CONTACTS, tag="vip", q="a@") == [both["id"]]
    problem = _problem(client.get(CONTACTS, query_string={"tag": "not valid"}, headers=READ), 422)
    assert set(problem["errors"]) == {"tag"}


def test_accounts_have_tags_too(client, rw_headers):
    account = client.post(ACCOUNTS, json={"name": "Acme"}, headers=rw_headers).json
    other = client.post(ACCOUNTS, json={"name": "Other", "tags": ["b2b"]}, headers=rw_headers).json
    url = f"{ACCOUNTS}/{account['id']}/tags"
    added = client.post(url, json={"tags": ["Key-Account", "b2b"]}, headers=rw_headers)
    assert (added.status_code, added.json["tags"], added.json["version"]) == (200, ["b2b", "key-account"], 2)
    assert _ids(client, ACCOUNTS, tag="b2b") == [other["id"], account["id"]]
    assert _ids(client, ACCOUNTS, tag=["b2b", "key-account"]) == [account["id"]]
    removed = client.delete(f"{url}/key-account", headers=rw_headers).json
    assert (removed["tags"], removed["version"]) == (["b2b"], 3)
    assert client.delete(f"{url}/key-account", headers=rw_headers).json["version"] == 3
