"""A time whose offset puts it outside the years UTC can hold is a 422 naming the field, never a 500."""
from __future__ import annotations

import uuid

import pytest

from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

YEAR_ONE_EAST = "0001-01-01T00:00:00+01:00"  # 31 December of year 0 in UTC, which does not exist


def test_a_purchase_in_year_one_east_of_greenwich_is_a_422(service_app):
    client = service_app("loyalty").test_client()
    r = client.post("/api/v1/loyalty/purchases", headers=identity_headers("loyalty:read", "loyalty:write"),
                    json={"contact_id": str(uuid.uuid4()), "amount": "1.00", "currency": "EUR",
                          "occurred_at": YEAR_ONE_EAST})
    assert r.status_code == 422, r.get_data(as_text=True)
    assert "occurred_at" in str(r.json["errors"]), r.json


@pytest.mark.parametrize("path, body", [
    ("consents", {"changes": [{"channel": "email", "purpose": "marketing", "status": "withdrawn", "source": "web",
                               "occurred_at": YEAR_ONE_EAST}]}),
    ("feedback", {"kind": "nps", "score": 7, "occurred_at": YEAR_ONE_EAST}),
    ("interactions", {"type": "note", "summary": "x", "occurred_at": YEAR_ONE_EAST}),
])
def test_a_contact_record_in_year_one_east_of_greenwich_is_a_422(service_app, path, body):
    client = service_app("contacts").test_client()
    headers = identity_headers("contacts:read", "contacts:write")
    contact = client.post("/api/v1/contacts", headers=headers, json={"email": "early@example.com"}).json
    r = client.post(f"/api/v1/contacts/{contact['id']}/{path}", headers=headers, json=body)
    assert r.status_code == 422, r.get_data(as_text=True)
    assert "occurred_at" in str(r.json["errors"])
