"""crm.lead.converted through the inbox dispatcher on the real PostgreSQL: create or match, never duplicate."""
from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import func, select

from services.common.catalog import make_event, parse_event
from services.common.consumer import InboxDispatcher
from services.contacts.handlers import HANDLERS
from services.contacts.models import InboxEntry

pytestmark = pytest.mark.integration


def _converted(email: str = "ann@example.com", lead_id: uuid.UUID | None = None, **profile):
    event = make_event("crm.lead.converted", {"lead_id": lead_id or uuid.uuid4(), "email": email, **profile},
                       source="/services/leads", correlationid="req-123")
    # What a consumer receives: the wire form, parsed and validated again.
    return parse_event(event.to_json())


@pytest.fixture
def dispatcher(runtime):
    return InboxDispatcher(lambda **kw: runtime.uow(**kw), InboxEntry, HANDLERS)


def test_a_converted_lead_becomes_a_contact_and_is_announced(dispatcher, store):
    event = _converted("Ann@Example.com", first_name="Ann", last_name="Lee", company="Acme", job_title="CTO",
                       phone="+1 555", score=80, source="web")
    assert dispatcher.dispatch(event) is True
    [contact] = store.contacts()
    assert (contact.email, contact.first_name, contact.last_name, contact.company, contact.job_title, contact.phone) \
        == ("Ann@Example.com", "Ann", "Lee", "Acme", "CTO", "+1 555")
    assert contact.origin_lead_id == event.data["lead_id"]
    [created] = store.events("crm.contact.created")
    assert created["data"] == {"contact_id": str(contact.id), "email": "Ann@Example.com",
                               "lead_id": str(event.data["lead_id"]), "matched": False}
    assert (created["causationid"], created["correlationid"], created["source"]) == \
        (str(event.id), "req-123", "/services/contacts")


def test_converting_twice_returns_the_same_contact(dispatcher, store):
    event = _converted(first_name="Ann")
    assert dispatcher.dispatch(event) is True
    assert dispatcher.dispatch(event) is False  # the inbox remembers it
    assert store.contact_count() == 1
    assert len(store.events("crm.contact.created")) == 1


def test_a_lead_converted_again_under_a_new_event_id_still_yields_its_one_contact(dispatcher, store):
    lead_id = uuid.uuid4()
    dispatcher.dispatch(_converted(lead_id=lead_id))
    dispatcher.dispatch(_converted(lead_id=lead_id))
    [contact] = store.contacts()
    assert [e["data"]["contact_id"] for e in store.events("crm.contact.created")] == [str(contact.id)] * 2
    assert {e["data"]["matched"] for e in store.events("crm.contact.created")} == {False}


def test_a_lead_with_a_known_email_is_matched_and_only_fills_empty_fields(client, rw_headers, dispatcher, store):
    existing = client.post("/api/v1/contacts", json={"email": "ann@example.com", "first_name": "Ann", "phone": "+1 555"},
                           headers=rw_headers).json
    event = _converted("ANN@Example.com", first_name="Annie", last_name="Lee", company="Acme", phone="+2 666")
    dispatcher.dispatch(event)
    [contact] = store.contacts()
    assert str(contact.id) == existing["id"]
    assert (contact.email, contact.first_name, contact.last_name, contact.company, contact.phone, contact.version) \
        == ("ann@example.com", "Ann", "Lee", "Acme", "+1 555", 2)
    assert contact.origin_lead_id is None
    [updated] = store.events("crm.contact.updated")
    assert updated["data"] == {"contact_id": existing["id"], "changed": ["company", "last_name"], "version": 2}
    created = store.events("crm.contact.created")[-1]
    assert created["data"] == {"contact_id": existing["id"], "email": "ann@example.com",
                               "lead_id": str(event.data["lead_id"]), "matched": True}


def test_two_leads_with_one_email_converting_at_once_make_one_contact(dispatcher, store, runtime):
    lead_a, lead_b = uuid.uuid4(), uuid.uuid4()
    events = [_converted("same@example.com", lead_a, first_name="Ann"),
              _converted("SAME@example.com", lead_b, last_name="Lee")]
    barrier = threading.Barrier(8)
    results, errors, lock = [], [], threading.Lock()

    def deliver(i):
        event = events[i % 2]  # each event arrives four times, as redeliveries to several workers would
        barrier.wait()
        try:
            fresh = dispatcher.dispatch(event)
            with lock:
                results.append(fresh)
        except Exception as exc:  # noqa: BLE001 — collected and asserted below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(results) == [False] * 6 + [True] * 2
    [contact] = store.contacts()
    created = store.events("crm.contact.created")
    assert {e["data"]["lead_id"] for e in created} == {str(lead_a), str(lead_b)} and len(created) == 2
    assert {e["data"]["contact_id"] for e in created} == {str(contact.id)}
    by_lead = {e["data"]["lead_id"]: e["data"]["matched"] for e in created}
    assert by_lead[str(contact.origin_lead_id)] is False
    assert sorted(by_lead.values()) == [False, True]
    # Whichever lead won, the other one filled its gap.
    assert (contact.first_name, contact.last_name) == ("Ann", "Lee")
    with runtime.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(InboxEntry)) == 2
