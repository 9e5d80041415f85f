"""Custom attributes on the real PostgreSQL: definitions, typed values on contacts, and `?attr.<name>=` filters."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import event, update

from services.contacts.attributes import checked_values
from services.contacts.models import Contact
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

CONTACTS = "/api/v1/contacts"
DEFINITIONS = "/api/v1/contacts/attributes"
READ = identity_headers("contacts:read")

SAMPLE = [
    {"name": "tier", "type": "enum", "options": ["gold", "silver"], "label": "Tier"},
    {"name": "score", "type": "number"},
    {"name": "birthday", "type": "date"},
    {"name": "newsletter", "type": "boolean"},
    {"name": "nickname", "type": "string", "max_length": 10, "description": "What friends call them."},
]


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.json


@pytest.fixture
def defined(client, rw_headers):
    """The SAMPLE definitions."""
    for body in SAMPLE:
        assert client.post(DEFINITIONS, json=body, headers=rw_headers).status_code == 201


def _contact(client, headers, email="ann@example.com", **attributes) -> dict:
    response = client.post(CONTACTS, json={"email": email, "attributes": attributes}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def _ids(client, **query) -> list[str]:
    response = client.get(CONTACTS, query_string=query, headers=READ)
    assert response.status_code == 200, response.json
    return [item["id"] for item in response.json["items"]]


# -- definitions --------------------------------------------------------------------------------------------

def test_a_definition_is_created_read_and_listed(client, rw_headers, defined):
    response = client.get(f"{DEFINITIONS}/nickname", headers=READ)
    assert response.status_code == 200
    assert {k: v for k, v in response.json.items() if k != "created_at"} == {
        "name": "nickname", "type": "string", "label": "nickname", "description": "What friends call them.",
        "options": [], "max_length": 10}
    assert client.get(f"{DEFINITIONS}/tier", headers=READ).json["options"] == ["gold", "silver"]
    assert client.get(f"{DEFINITIONS}/score", headers=READ).json["max_length"] is None
    page = client.get(DEFINITIONS, query_string={"limit": 3}, headers=READ).json
    rest = client.get(DEFINITIONS, query_string={"limit": 3, "cursor": page["next_cursor"]}, headers=READ).json
    assert [d["name"] for d in page["items"] + rest["items"]] == [d["name"] for d in reversed(SAMPLE)]
    created = client.post(DEFINITIONS, json={"name": "region", "type": "string"}, headers=rw_headers)
    assert created.headers["Location"] == f"{DEFINITIONS}/region" and created.json["max_length"] == 255


@pytest.mark.parametrize("body, field", [
    ({"type": "string"}, "name"),
    ({"name": "Tier", "type": "string"}, "name"),
    ({"name": "1st", "type": "string"}, "name"),
    ({"name": "x" * 41, "type": "string"}, "name"),
    ({"name": "colour", "type": "color"}, "type"),
    ({"name": "colour", "type": "enum"}, "options"),
    ({"name": "colour", "type": "enum", "options": []}, "options"),
    ({"name": "colour", "type": "enum", "options": ["red", " red "]}, "options"),
    ({"name": "colour", "type": "string", "options": ["red"]}, "options"),
    ({"name": "colour", "type": "number", "max_length": 5}, "max_length"),
    ({"name": "colour", "type": "string", "max_length": 1001}, "max_length"),
    ({"name": "colour", "type": "string", "unit": "cm"}, "unit"),
])
def test_a_bad_definition_is_a_422_naming_the_field(client, rw_headers, body, field):
    problem = _problem(client.post(DEFINITIONS, json=body, headers=rw_headers), 422)
    assert set(problem["errors"]) == {field}
    assert client.get(DEFINITIONS, headers=READ).json["items"] == []


def test_a_name_in_use_is_a_409_and_an_unknown_one_a_404(client, rw_headers, defined):
    _problem(client.post(DEFINITIONS, json={"name": "tier", "type": "string"}, headers=rw_headers), 409)
    _problem(client.get(f"{DEFINITIONS}/nope", headers=READ), 404)
    _problem(client.delete(f"{DEFINITIONS}/nope", headers=rw_headers), 404)


def test_definition_routes_need_the_contacts_scopes(client, rw_headers, defined):
    _problem(client.post(DEFINITIONS, json={"name": "x", "type": "string"}, headers=READ), 403)
    _problem(client.delete(f"{DEFINITIONS}/tier", headers=READ), 403)
    _problem(client.get(DEFINITIONS, headers=identity_headers("contacts:write")), 403)
    _problem(client.get(f"{DEFINITIONS}/tier", headers=identity_headers("leads:read")), 403)


def test_a_definition_is_deleted_only_once_no_contact_has_a_value(client, rw_headers, defined):
    contact = _contact(client, rw_headers, tier="gold")
    problem = _problem(client.delete(f"{DEFINITIONS}/tier", headers=rw_headers), 409)
    assert "tier" in problem["detail"]
    assert client.get(f"{DEFINITIONS}/tier", headers=READ).status_code == 200
    assert client.delete(f"{DEFINITIONS}/score", headers=rw_headers).status_code == 204  # nobody has a score
    client.patch(f"{CONTACTS}/{contact['id']}", json={"attributes": {"tier": None}}, headers=rw_headers)
    assert client.delete(f"{DEFINITIONS}/tier", headers=rw_headers).status_code == 204
    _problem(client.get(f"{DEFINITIONS}/tier", headers=READ), 404)
    problem = _problem(client.post(CONTACTS, json={"email": "b@example.com", "attributes": {"tier": "gold"}},
                                   headers=rw_headers), 422)
    assert set(problem["errors"]) == {"attributes.tier"}


def test_a_delete_waits_for_a_writer_of_the_attribute_and_then_sees_its_value(app, client, rw_headers, runtime,
                                                                             defined):
    contact = _contact(client, rw_headers)
    answers = []
    uow = runtime.uow()
    with uow:
        typed = checked_values(uow.session, {"tier": "gold"})  # holds the definition (shared) until the commit
        deleting = threading.Thread(target=lambda: answers.append(
            app.test_client().delete(f"{DEFINITIONS}/tier", headers=rw_headers).status_code))
        deleting.start()
        time.sleep(0.5)
        assert deleting.is_alive() and answers == []
        uow.session.execute(update(Contact).where(Contact.id == uuid.UUID(contact["id"])).values(attributes=typed))
        uow.commit()
    deleting.join(10)
    assert answers == [409]
    assert client.get(f"{DEFINITIONS}/tier", headers=READ).status_code == 200


# -- values -------------------------------------------------------------------------------------------------

def test_values_are_stored_in_their_types_canonical_form(client, rw_headers, store, defined):
    contact = _contact(client, rw_headers, tier=" gold ", score="0019.90", birthday="1990-02-28", newsletter=True,
                       nickname=" Annie ")
    expected = {"tier": "gold", "score": "19.9", "birthday": "1990-02-28", "newsletter": True, "nickname": "Annie"}
    assert contact["attributes"] == expected
    assert store.contacts()[0].attributes == expected
    assert client.get(f"{CONTACTS}/{contact['id']}", headers=READ).json["attributes"] == expected
    precise = _contact(client, rw_headers, "b@example.com", score="123456789012345678.0123456789")
    assert precise["attributes"] == {"score": "123456789012345678.0123456789"}
    assert _contact(client, rw_headers, "c@example.com", score=-42)["attributes"] == {"score": "-42"}
    assert _contact(client, rw_headers, "d@example.com", score="-0.00")["attributes"] == {"score": "0"}


@pytest.mark.parametrize("attributes, field", [
    ({"score": 19.99}, "attributes.score"),
    ({"score": "1e3"}, "attributes.score"),
    ({"score": "NaN"}, "attributes.score"),
    ({"score": "0.12345678901"}, "attributes.score"),
    ({"score": "1" * 19}, "attributes.score"),
    ({"score": True}, "attributes.score"),
    ({"birthday": "1990-02-30"}, "attributes.birthday"),
    ({"birthday": "19900228"}, "attributes.birthday"),
    ({"newsletter": "yes"}, "attributes.newsletter"),
    ({"tier": "Gold"}, "attributes.tier"),
    ({"nickname": "x" * 11}, "attributes.nickname"),
    ({"nickname": "  "}, "attributes.nickname"),
    ({"nickname": 5}, "attributes.nickname"),
    ({"nope": "x"}, "attributes.nope"),
    ({"Bad Name": "x"}, "attributes.Bad Name"),
])
def test_a_value_that_does_not_fit_its_definition_is_a_422_naming_it(client, rw_headers, store, defined,
                                                                    attributes, field):
    problem = _problem(client.post(CONTACTS, json={"email": "ann@example.com", "attributes": attributes},
                                   headers=rw_headers), 422)
    assert set(problem["errors"]) == {field}
    assert store.contact_count() == 0 and store.events() == []


def test_patch_merges_attributes_and_null_removes_one(client, rw_headers, store, defined):
    contact = _contact(client, rw_headers, tier="gold", score="5")
    url = f"{CONTACTS}/{contact['id']}"
    patched = client.patch(url, json={"attributes": {"score": "6", "newsletter": False}}, headers=rw_headers).json
    assert (patched["attributes"], patched["version"]) == ({"tier": "gold", "score": "6", "newsletter": False}, 2)
    same = client.patch(url, json={"attributes": {"score": "6.000"}}, headers=rw_headers).json
    assert same["version"] == 2  # the same number: nothing changed
    removed = client.patch(url, json={"attributes": {"tier": None, "score": None}}, headers=rw_headers).json
    assert (removed["attributes"], removed["version"]) == ({"newsletter": False}, 3)
    problem = _problem(client.patch(url, json={"attributes": {"tier": "bronze"}, "company": "Acme"},
                                    headers=rw_headers), 422)
    assert set(problem["errors"]) == {"attributes.tier"}
    assert (store.contacts()[0].company, store.contacts()[0].version) == (None, 3)
    assert [e["data"]["changed"] for e in store.events("crm.contact.updated")] == [["attributes"], ["attributes"]]


def test_definitions_are_read_only_by_requests_that_use_attributes(client, rw_headers, runtime, defined):
    statements = []

    def record(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(runtime.engine, "before_cursor_execute", record)
    try:
        contact = _contact(client, rw_headers)
        client.patch(f"{CONTACTS}/{contact['id']}", json={"company": "Acme"}, headers=rw_headers)
        client.get(CONTACTS, query_string={"tag": "vip"}, headers=READ)
        assert not any("attribute_definitions" in sql for sql in statements)
        client.get(CONTACTS, query_string={"attr.tier": "gold"}, headers=READ)
        assert sum("attribute_definitions" in sql for sql in statements) == 1
    finally:
        event.remove(runtime.engine, "before_cursor_execute", record)


# -- filters ------------------------------------------------------------------------------------------------

def test_contacts_are_filtered_by_typed_attribute_values(client, rw_headers, defined):
    ann = _contact(client, rw_headers, "ann@example.com", tier="gold", score="19.9", newsletter=True)
    bob = _contact(client, rw_headers, "bob@example.com", tier="gold", score="20", newsletter=False,
                   birthday="1990-02-28")
    _contact(client, rw_headers, "cy@example.com", tier="silver", nickname="gold")
    assert _ids(client, **{"attr.tier": "gold"}) == [bob["id"], ann["id"]]
    assert _ids(client, **{"attr.score": "19.90"}) == [ann["id"]]
    assert _ids(client, **{"attr.newsletter": "false"}) == [bob["id"]]
    assert _ids(client, **{"attr.birthday": "1990-02-28", "attr.tier": "gold"}) == [bob["id"]]
    assert _ids(client, **{"attr.nickname": "gold"}) != _ids(client, **{"attr.tier": "gold"})
    assert _ids(client, **{"attr.tier": "gold", "tag": "vip"}) == []


@pytest.mark.parametrize("query, field", [
    ({"attr.nope": "x"}, "attr.nope"),
    ({"attr.score": "many"}, "attr.score"),
    ({"attr.newsletter": "yes"}, "attr.newsletter"),
    ({"attr.tier": "bronze"}, "attr.tier"),
    ({"attr.birthday": "tomorrow"}, "attr.birthday"),
    ({"attr.Bad": "x"}, "attr.Bad"),
    ({"attr.tier": ["gold", "silver"]}, "attr.tier"),
    ({"attr." + "x" * 51: "gold"}, "attr"),
])
def test_a_bad_attribute_filter_is_a_422_naming_it(client, defined, query, field):
    problem = _problem(client.get(CONTACTS, query_string=query, headers=READ), 422)
    assert set(problem["errors"]) == {field}
