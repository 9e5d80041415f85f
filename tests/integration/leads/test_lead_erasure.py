"""crm.contact.erased in leads on the real PostgreSQL: the person's leads anonymised (counts stay), the messages
naming them purged, the erasure confirmed once."""
from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select, update

from services.common.catalog import make_event
from services.common.consumer import InboxDispatcher
from services.leads import handlers
from services.leads.models import IdempotencyRecord, Lead, OutboxMessage
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

RW = identity_headers("leads:read", "leads:write")
PERSON = {"first_name": "Zyxwvuta", "last_name": "Qopmnlkj", "company": "Zyx Ltd", "job_title": "CTO",
          "phone": "+49 30 1234567", "source": "web", "campaign": "spring"}


@pytest.fixture
def leads(service_app):
    return service_app("leads")


def _capture(client, email, key=None, **fields) -> dict:
    headers = {**RW, "Idempotency-Key": key} if key else RW
    r = client.post("/api/v1/leads", headers=headers, json={"email": email, **fields})
    assert r.status_code in (201, 202), r.get_data(as_text=True)
    return r.json


def _linked(leads, lead_id, contact_id) -> None:
    runtime = leads.extensions["crm.runtime"]
    dispatcher = InboxDispatcher(lambda **kw: runtime.uow(**kw), runtime.inbox_model, handlers.HANDLERS)
    event = make_event("crm.contact.created", {"contact_id": contact_id, "email": "x@example.com",
                                               "lead_id": lead_id, "matched": False}, source="/services/contacts")
    assert dispatcher.dispatch_batch([event]) == [True]


def test_erasing_a_person_anonymises_every_lead_of_theirs_and_keeps_the_counts(leads):
    c = leads.test_client()
    contact_id = uuid.uuid4()
    converted = _capture(c, "Zyx@Example.com", key="capture-1", **PERSON)
    assert c.post(f"/api/v1/leads/{converted['id']}/convert", headers=RW).status_code == 202
    _linked(leads, converted["id"], contact_id)
    named = _capture(c, "zyx.old@example.com", **PERSON)  # known to contacts by id only
    open_one = _capture(c, "ZYX@example.com", key="capture-2", first_name="Zyxwvuta")  # never converted, same person
    other = _capture(c, "xzyx@example.com", key="capture-3", first_name="Bob", source="web", campaign="spring")
    runtime = leads.extensions["crm.runtime"]
    with runtime.session_factory() as s, s.begin():
        s.execute(update(OutboxMessage).values(published_at=func.now()))
    dispatcher = InboxDispatcher(lambda **kw: runtime.uow(**kw), runtime.inbox_model, handlers.HANDLERS)
    erased = make_event("crm.contact.erased", {"erasure_id": uuid.uuid4(), "contact_id": contact_id,
                                               "email": "zyx@example.com", "lead_ids": [named["id"]]},
                        source="/services/contacts")

    assert dispatcher.dispatch_batch([erased]) == [True]

    with runtime.session_factory() as s:
        rows = {str(lead.id): lead for lead in s.scalars(select(Lead))}
        keys = set(s.scalars(select(IdempotencyRecord.key)))
        payloads = list(s.scalars(select(OutboxMessage.payload).where(OutboxMessage.published_at.is_not(None))))
    for lead in (converted, named, open_one):
        row = rows[lead["id"]]
        assert row.email == row.email_normalized == f"erased-{lead['id']}@erased.invalid"
        assert (row.first_name, row.last_name, row.company, row.job_title, row.phone) == (None,) * 5
        assert row.score_factors == [] and row.score_degraded == []
        assert (row.source, row.campaign) == (lead["source"], lead["campaign"]), "campaign counts stay"
    assert rows[converted["id"]].status == "converted" and rows[converted["id"]].contact_id == contact_id
    assert rows[open_one["id"]].status == "disqualified", "nobody is left to work an open lead"
    assert rows[other["id"]].email == "xzyx@example.com" and rows[other["id"]].first_name == "Bob"
    assert keys == {"capture-3"}
    assert not [p for p in payloads if '"zyx@example.com"' in p.lower() or "Zyxwvuta" in p]
    assert [p for p in payloads if other["id"] in p]
    confirmations = _events(runtime, "crm.erasure.completed")
    assert [m["data"]["service"] for m in confirmations] == ["leads"]
    assert confirmations[0]["data"]["erasure_id"] == str(erased.data["erasure_id"])

    assert dispatcher.dispatch_batch([erased]) == [False], "a redelivery is absorbed by the inbox"
    assert len(_events(runtime, "crm.erasure.completed")) == 1
    # Capturing the address again is a new lead: the erased ones no longer hold it.
    assert _capture(c, "zyx@example.com")["id"] not in rows


def _events(runtime, event_type) -> list[dict]:
    with runtime.session_factory() as s:
        return [json.loads(p) for p in s.scalars(select(OutboxMessage.payload)
                                                 .where(OutboxMessage.event_type == event_type))]
