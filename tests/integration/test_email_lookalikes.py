"""Look-alike spellings of one e-mail address make no second contact or lead (issue 7 §2).

Addresses are matched on NFKC plus IDNA of the domain (services/common/emails.py); an address whose domain
IDNA refuses is a 422 naming the field, in every place an address comes in.
"""
from __future__ import annotations

import pytest

from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

SPELLINGS = ["ann@bücher.example", "ＡＮＮ@Bücher.Example", "ann@xn--bcher-kva.example", "ann@bu\u0308cher.example"]
REFUSED = ["ann@☃.net", "ann@ab--cd.example"]


def test_a_look_alike_address_is_the_same_contact(service_app):
    client = service_app("contacts").test_client()
    headers = identity_headers("contacts:read", "contacts:write")

    first = client.post("/api/v1/contacts", headers=headers, json={"email": SPELLINGS[0]})
    assert first.status_code == 201, first.text
    for spelling in SPELLINGS[1:]:
        again = client.post("/api/v1/contacts", headers=headers, json={"email": spelling})
        assert again.status_code == 409 and again.json["existing_contact_id"] == first.json["id"], spelling
        found = client.get("/api/v1/contacts", headers=headers, query_string={"email": spelling}).json["items"]
        assert [c["id"] for c in found] == [first.json["id"]], spelling
    other = client.post("/api/v1/contacts", headers=headers, json={"email": "ann@bucher.example"})
    assert other.status_code == 201


def test_an_address_idna_refuses_is_a_422_naming_the_field(service_app):
    client = service_app("contacts").test_client()
    headers = identity_headers("contacts:read", "contacts:write")
    contact = client.post("/api/v1/contacts", headers=headers, json={"email": "ann@example.com"}).json

    for address in REFUSED:
        for response in (client.post("/api/v1/contacts", headers=headers, json={"email": address}),
                         client.patch(f"/api/v1/contacts/{contact['id']}", headers=headers, json={"email": address}),
                         client.get("/api/v1/contacts", headers=headers, query_string={"email": address})):
            assert response.status_code == 422, (address, response.text)
            assert response.mimetype == "application/problem+json"
            assert list(response.json["errors"]) == ["email"]
    assert client.get(f"/api/v1/contacts/{contact['id']}", headers=headers).json["email"] == "ann@example.com"


def test_a_look_alike_capture_is_a_touch_on_the_open_lead_and_a_refused_domain_is_a_422(service_app):
    client = service_app("leads").test_client()
    headers = identity_headers("leads:read", "leads:write")

    first = client.post("/api/v1/leads", headers=headers, json={"email": SPELLINGS[0]})
    assert first.status_code == 201, first.text
    for spelling in SPELLINGS[1:]:
        again = client.post("/api/v1/leads", headers=headers, json={"email": spelling})
        assert again.status_code == 200 and again.json["id"] == first.json["id"], spelling
    assert client.get(f"/api/v1/leads/{first.json['id']}", headers=headers).json["touch_count"] == len(SPELLINGS)
    for address in REFUSED:
        refused = client.post("/api/v1/leads", headers=headers, json={"email": address})
        assert refused.status_code == 422 and list(refused.json["errors"]) == ["email"], refused.text
