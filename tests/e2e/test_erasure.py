"""End to end through the gateway: a person with a converted lead, a loyalty membership, purchases, a redemption,
interactions and feedback is erased; once every service has confirmed, no database of the suite holds their
e-mail address or their name, in any table or text column."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import JSON, String, Text, create_engine, inspect, text
from sqlalchemy.dialects.postgresql import JSONB

from tests.support.drain import wait_drained
from tests.support.fixtures import Client
from tests.support.suite import wait_until

pytestmark = pytest.mark.e2e

# Names no test data elsewhere contains, so a hit means this person.
FIRST, LAST = "Zyxwvuta", "Qopmnlkj"


@pytest.fixture(scope="module")
def eraser(suite):
    key = suite.create_key(scopes="contacts:*,contacts:erase,leads:*,loyalty:*", name="e2e-erasure")
    return Client(suite.gateway_url, key)


def _ok(response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def _hits(database_url: str, needles: list[str]) -> list[str]:
    """`table.column` of every text or JSON column of a database holding one of `needles` (case-insensitive)."""
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    found = []
    try:
        inspector = inspect(engine)
        with engine.connect() as conn:
            for table in inspector.get_table_names():
                for column in inspector.get_columns(table):
                    if not isinstance(column["type"], (String, Text, JSON, JSONB)):
                        continue
                    for needle in needles:
                        query = text(f'SELECT count(*) FROM "{table}" WHERE CAST("{column["name"]}" AS TEXT) '
                                     f"ILIKE :pattern")
                        if conn.scalar(query, {"pattern": f"%{needle}%"}):
                            found.append(f"{table}.{column['name']} holds {needle!r}")
    finally:
        engine.dispose()
    return found


def test_an_erased_person_is_nowhere_in_the_suite_once_every_service_confirmed(suite, eraser):
    c = eraser
    email = f"{FIRST}.{LAST}+{uuid.uuid4().hex[:8]}@Erase.example"
    lead = _ok(c.post("/api/v1/leads", headers={"Idempotency-Key": f"lead-{email}"},
                      json={"email": email, "first_name": FIRST, "last_name": LAST, "company": f"{LAST} GmbH",
                            "phone": "+49 30 555 0101", "source": "web"}), 201)
    _ok(c.post(f"/api/v1/leads/{lead['id']}/convert"), 202)
    converted = wait_until(lambda: (r := c.get(f"/api/v1/leads/{lead['id']}").json())["status"] == "converted" and r,
                           timeout=60, message="lead converted")
    contact_id = converted["contact_id"]
    member = wait_until(lambda: (c.get("/api/v1/loyalty/members", params={"contact_id": contact_id}).json()
                                 ["items"] or [None])[0], timeout=60, message="contact auto-enrolled")
    points = 0
    for amount in ("40.00", "12.50"):
        points += _ok(c.post("/api/v1/loyalty/purchases", headers={"Idempotency-Key": f"buy-{amount}-{contact_id}"},
                   json={"contact_id": contact_id, "amount": amount, "currency": "EUR",
                         "occurred_at": "2026-11-02T10:00:00+00:00", "external_id": f"receipt-{uuid.uuid4().hex}"}),
                      201)["points"]
    _ok(c.post(f"/api/v1/loyalty/members/{member['id']}/redemptions",
               json={"points": 5, "reason": f"Birthday gift for {FIRST} {LAST}"}), 201)
    _ok(c.post(f"/api/v1/contacts/{contact_id}/interactions", headers={"Idempotency-Key": f"call-{contact_id}"},
               json={"type": "call", "channel": "phone", "direction": "inbound",
                     "summary": f"{FIRST} {LAST} ({email}) asked about the invoice"}), 201)
    _ok(c.post(f"/api/v1/contacts/{contact_id}/feedback",
               json={"kind": "nps", "score": 9, "comment": f"Signed, {FIRST}"}), 201)
    wait_until(lambda: c.get(f"/api/v1/contacts/{contact_id}").json()["purchases"]["count"] == 2, timeout=60,
               message="purchases counted on the contact")
    # Everything the person did has reached every service before the erasure.
    wait_drained(suite.database_urls, suite.vhost)
    needles = [email, FIRST, LAST]
    for service in ("contacts", "leads", "loyalty"):
        assert _hits(suite.database_urls[service], needles), f"the search finds the person in {service} before"

    erasure = _ok(c.post(f"/api/v1/contacts/{contact_id}/erasure"), 202)
    done = wait_until(lambda: (r := c.get(f"/api/v1/contacts/erasures/{erasure['id']}").json())["status"]
                      == "completed" and r, timeout=120, message="erasure completed")

    assert {s["service"] for s in done["services"]} >= {"contacts", "leads", "loyalty"}
    assert all(s["confirmed_at"] for s in done["services"])
    hits = {service: _hits(url, needles) for service, url in suite.database_urls.items()}
    assert hits == {service: [] for service in suite.database_urls}
    gone = c.get(f"/api/v1/contacts/{contact_id}")
    assert gone.status_code == 410 and gone.json()["erasure_id"] == erasure["id"]
    # What may stay, stays: the points and the pseudonymous purchase metrics.
    assert c.get(f"/api/v1/loyalty/members/{member['id']}").json()["balance"] == points - 5
    assert c.get(f"/api/v1/leads/{lead['id']}").json()["status"] == "converted"
