"""The CSV export (streamed, filtered like the list) and a contact as a vCard, on the real PostgreSQL."""
from __future__ import annotations

import csv
import io
import tracemalloc
import uuid

import pytest
import vobject
from sqlalchemy import text, update

from services.contacts import export
from services.contacts.models import AttributeDefinition, Contact
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

EXPORT_URL = "/api/v1/contacts/export"
EXPORTER = identity_headers("contacts:export")


def _create(client, headers, **fields) -> dict:
    response = client.post("/api/v1/contacts", json=fields, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def _csv(response) -> list[dict]:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/csv" and response.mimetype_params == {"charset": "utf-8"}
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True), newline="")))
    assert rows[0] == list(export.COLUMNS)
    return [dict(zip(rows[0], row)) for row in rows[1:]]


# -- export ----------------------------------------------------------------------------------------------------

def test_the_export_has_every_column_oldest_first_with_formulas_neutralised(client, rw_headers, runtime):
    ann = _create(client, rw_headers, email="ann@example.com", first_name="=HYPERLINK(\"http://evil\")",
                  last_name="Lee, Jr.", company="Acme; \"Quoted\"", phone="+1 555 0100")
    bob = _create(client, rw_headers, email="bob@example.com", first_name="Bøb", job_title="@lead\nnext line")
    with runtime.session_factory() as s, s.begin():
        s.execute(update(Contact).where(Contact.email == "ann@example.com")
                  .values(tags=["b2b", "vip"], attributes={"tier": "gold", "since": "2020-01-01"}))
    rows = _csv(client.get(EXPORT_URL, headers=EXPORTER))
    assert [row["id"] for row in rows] == [ann["id"], bob["id"]]
    first, second = rows
    assert (first["status"], first["terminated_at"]) == ("active", "")
    assert (first["email"], first["first_name"], first["last_name"], first["company"], first["phone"]) == \
        ("ann@example.com", "'=HYPERLINK(\"http://evil\")", "Lee, Jr.", "Acme; \"Quoted\"", "'+1 555 0100")
    assert (first["tags"], first["attributes"]) == ("b2b;vip", '{"since": "2020-01-01", "tier": "gold"}')
    assert (second["first_name"], second["job_title"], second["tags"], second["attributes"]) == \
        ("Bøb", "'@lead\nnext line", "", "")
    assert (second["version"], second["origin_lead_id"], second["account_id"]) == ("1", "", "")
    assert second["created_at"] == bob["created_at"]


def test_the_export_takes_the_lists_filters(client, rw_headers, runtime):
    _create(client, rw_headers, email="ann@acme.example", company="Acme")
    _create(client, rw_headers, email="bob@other.example", company="Other")
    assert [row["email"] for row in _csv(client.get(f"{EXPORT_URL}?q=acme", headers=EXPORTER))] == ["ann@acme.example"]
    assert [row["email"] for row in _csv(client.get(f"{EXPORT_URL}?email=BOB@other.example", headers=EXPORTER))] == \
        ["bob@other.example"]
    assert _csv(client.get(f"{EXPORT_URL}?q=nobody", headers=EXPORTER)) == []
    refused = client.get(f"{EXPORT_URL}?email=not-an-address", headers=EXPORTER)
    assert refused.status_code == 422 and "email" in refused.json["errors"]
    with runtime.uow() as uow:
        uow.session.add(AttributeDefinition(name="tier", type="enum", label="Tier", options=["gold", "silver"]))
        uow.session.execute(update(Contact).where(Contact.email == "bob@other.example")
                            .values(attributes={"tier": "gold"}, tags=["vip"]))
        uow.commit()
    assert [row["email"] for row in _csv(client.get(f"{EXPORT_URL}?attr.tier=gold&tag=vip", headers=EXPORTER))] == \
        ["bob@other.example"]
    refused = client.get(f"{EXPORT_URL}?attr.tier=platinum", headers=EXPORTER)  # before a byte of CSV is sent
    assert refused.status_code == 422 and "attr.tier" in refused.json["errors"]
    # Paging is not a filter: like any parameter the list does not know, it is ignored, and every match comes.
    assert len(_csv(client.get(f"{EXPORT_URL}?limit=1&cursor=abc&sort=email", headers=EXPORTER))) == 2


def test_only_a_key_with_contacts_export_may_export(client):
    for headers in (identity_headers("contacts:*"), identity_headers("contacts:read"),
                    identity_headers("contacts:import")):
        response = client.get(EXPORT_URL, headers=headers)
        assert response.status_code == 403 and response.mimetype == "application/problem+json"
    assert client.get(EXPORT_URL, headers=identity_headers("admin")).status_code == 200


def test_a_large_export_streams_one_batch_at_a_time(client, runtime, monkeypatch):
    monkeypatch.setattr(export, "BATCH", 200)  # many batches from a table the test can fill quickly
    rows = 60 * export.BATCH
    with runtime.session_factory() as s, s.begin():
        s.execute(text("INSERT INTO contacts (id, email, email_normalized, first_name, last_name, company, tags, "
                       "attributes, consents, created_at, updated_at, version) "
                       "SELECT gen_random_uuid(), 'person' || g || '@bulk.example', 'person' || g || '@bulk.example', "
                       "'First' || g, 'Last' || g, repeat('Company ', 10) || g, '[\"bulk\"]', '{}', '{}', now(), "
                       "now(), 1 FROM generate_series(1, :rows) g"), {"rows": rows})
    response = client.get(EXPORT_URL, headers=EXPORTER, buffered=False)
    assert response.is_streamed
    pieces = iter(response.response)
    tracemalloc.start()
    try:
        size, count = 0, 0
        for piece in pieces:
            size += len(piece)
            count += 1
            del piece
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        response.close()
    # The header, then one piece per batch; what is held at once is a batch or two, not the export.
    assert count == 1 + rows // export.BATCH
    assert size > 2_500_000 and peak < size / 3, (size, peak)


# -- vCard -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("first, last, company", [
    ("Ann", "Lee", "Acme"),
    ("Ann, Jr.", "O;Brien", "Acme, Inc.; Holdings"),
    ("Zoë", "Łukasiewicz-Ñúñez", "Bücher GmbH"),
])
def test_accept_text_vcard_returns_the_contact_as_a_vcard(client, rw_headers, first, last, company):
    contact = _create(client, rw_headers, email="zoë@bücher.example", first_name=first, last_name=last,
                      company=company, phone="+49 (30) 123-456", job_title="Head of R&D")
    response = client.get(f"/api/v1/contacts/{contact['id']}", headers={**rw_headers, "Accept": "text/vcard"})
    assert response.status_code == 200
    assert response.mimetype == "text/vcard" and response.mimetype_params == {"charset": "utf-8"}
    assert response.headers["ETag"] == 'W/"1"'
    card = vobject.readOne(response.get_data(as_text=True))
    assert card.fn.value == f"{first} {last}"
    assert (card.n.value.family, card.n.value.given) == (last, first)
    assert (card.email.value, card.tel.value, card.org.value, card.title.value) == \
        ("zoë@bücher.example", "+49 (30) 123-456", [company], "Head of R&D")
    assert card.uid.value == f"urn:uuid:{contact['id']}"


def test_json_stays_the_default_and_a_missing_contact_is_still_a_problem(client, rw_headers):
    contact = _create(client, rw_headers, email="ann@example.com")
    for accept in (None, "*/*", "application/json, text/vcard;q=0.5"):
        headers = {**rw_headers, **({"Accept": accept} if accept else {})}
        response = client.get(f"/api/v1/contacts/{contact['id']}", headers=headers)
        assert response.mimetype == "application/json" and response.json["id"] == contact["id"]
    missing = client.get(f"/api/v1/contacts/{uuid.uuid4()}", headers={**rw_headers, "Accept": "text/vcard"})
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    assert client.get(f"/api/v1/contacts/{contact['id']}",
                      headers={**identity_headers("contacts:write"), "Accept": "text/vcard"}).status_code == 403
