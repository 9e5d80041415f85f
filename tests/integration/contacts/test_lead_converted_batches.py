"""crm.lead.converted in batches on the real PostgreSQL: the set-based handler keeps the one-by-one rules."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from services.common.catalog import make_event, parse_event
from services.common.consumer import InboxDispatcher, handler_name
from services.contacts.handlers import HANDLERS, on_lead_converted
from services.contacts.models import InboxEntry

pytestmark = pytest.mark.integration


def _converted(email: str, lead_id: uuid.UUID | None = None, correlationid: str | None = "req-1", **profile):
    event = make_event("crm.lead.converted", {"lead_id": lead_id or uuid.uuid4(), "email": email, **profile},
                       source="/services/leads", correlationid=correlationid)
    return parse_event(event.to_json())


@pytest.fixture
def dispatcher(runtime):
    return InboxDispatcher(lambda **kw: runtime.uow(**kw), InboxEntry, HANDLERS)


def _inbox_rows(runtime) -> int:
    with runtime.session_factory() as s:
        return s.scalar(select(func.count()).select_from(InboxEntry))


def test_leads_with_one_email_in_one_batch_make_one_contact_that_the_later_ones_match(dispatcher, store, runtime):
    first = _converted("dup@example.com", first_name="Ann")
    second = _converted("DUP@Example.com", last_name="Lee", first_name="Annie")
    third = _converted("dup@example.com", lead_id=first.data["lead_id"], company="Acme")  # the first lead again
    other = _converted("other@example.com")

    assert dispatcher.dispatch_batch([first, second, third, other]) == [True] * 4

    dup, other_contact = store.contacts()
    assert (dup.email, dup.origin_lead_id, dup.first_name, dup.last_name, dup.company) == \
        ("dup@example.com", first.data["lead_id"], "Ann", "Lee", "Acme")
    created = store.events("crm.contact.created")
    assert [(e["data"]["lead_id"], e["data"]["contact_id"], e["data"]["matched"]) for e in created] == [
        (str(first.data["lead_id"]), str(dup.id), False),
        (str(second.data["lead_id"]), str(dup.id), True),
        # Its own contact, converted again: not a match, exactly as when the events come one by one.
        (str(first.data["lead_id"]), str(dup.id), False),
        (str(other.data["lead_id"]), str(other_contact.id), False),
    ]
    # Each later lead filled the gaps it found, one version at a time.
    updated = store.events("crm.contact.updated")
    assert [e["data"] for e in updated] == [
        {"contact_id": str(dup.id), "changed": ["last_name"], "version": 2},
        {"contact_id": str(dup.id), "changed": ["company"], "version": 3},
    ]
    assert dup.version == 3
    assert _inbox_rows(runtime) == 4


def test_a_batch_mixing_new_and_existing_contacts_matches_the_known_and_creates_the_rest(
        client, rw_headers, dispatcher, store):
    known = client.post("/api/v1/contacts", json={"email": "known@example.com", "first_name": "Kim"},
                        headers=rw_headers).json
    earlier = _converted("earlier@example.com", first_name="Eve")
    assert dispatcher.dispatch(earlier) is True
    batch = [_converted("new1@example.com"), _converted("KNOWN@example.com", first_name="Kimberly", phone="+1"),
             _converted("new2@example.com"), _converted("earlier@example.com", last_name="Ode")]

    assert dispatcher.dispatch_batch(batch) == [True] * 4

    by_email = {c.email_normalized: c for c in store.contacts()}
    assert set(by_email) == {"known@example.com", "earlier@example.com", "new1@example.com", "new2@example.com"}
    assert str(by_email["known@example.com"].id) == known["id"]
    assert (by_email["known@example.com"].first_name, by_email["known@example.com"].phone) == ("Kim", "+1")
    assert by_email["earlier@example.com"].last_name == "Ode"
    created = store.events("crm.contact.created")[2:]  # after those of the API create and the earlier lead
    assert [(e["data"]["email"], e["data"]["matched"]) for e in created] == [
        ("new1@example.com", False), ("known@example.com", True), ("new2@example.com", False),
        ("earlier@example.com", True)]
    assert by_email["new1@example.com"].origin_lead_id == batch[0].data["lead_id"]
    assert by_email["new2@example.com"].origin_lead_id == batch[2].data["lead_id"]


def test_events_recorded_for_a_batch_carry_the_correlation_and_causation_of_their_own_lead(dispatcher, store):
    existing = _converted("gap@example.com")
    dispatcher.dispatch(existing)
    batch = [_converted("a@example.com", correlationid="req-a"),
             _converted("gap@example.com", correlationid="req-b", company="Acme"),
             _converted("c@example.com", correlationid=None)]

    dispatcher.dispatch_batch(batch)

    expected = {str(e.data["lead_id"]): (e.correlationid or str(e.id), str(e.id)) for e in batch}
    created = store.events("crm.contact.created")[1:]
    assert {e["data"]["lead_id"]: (e["correlationid"], e["causationid"]) for e in created} == expected
    [updated] = store.events("crm.contact.updated")
    assert (updated["correlationid"], updated["causationid"]) == ("req-b", str(batch[1].id))


def test_the_batch_handler_keeps_the_inbox_key_so_events_handled_before_are_recognised(dispatcher, runtime, store):
    assert handler_name(on_lead_converted) == "services.contacts.handlers.on_lead_converted"
    before = _converted("before@example.com")
    # The inbox row a one-event-at-a-time handler of the same name wrote before the upgrade.
    with runtime.session_factory() as s:
        s.add(InboxEntry(event_id=before.id, handler="services.contacts.handlers.on_lead_converted",
                         event_type=before.type))
        s.commit()
    fresh = _converted("fresh@example.com")

    assert dispatcher.dispatch_batch([before, fresh]) == [False, True]
    assert dispatcher.dispatch(before) is False
    assert [c.email for c in store.contacts()] == ["fresh@example.com"]


def test_a_batch_reads_and_inserts_its_contacts_in_one_statement_each_whatever_its_size(dispatcher, runtime):
    statements: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _executemany):
        statements.append(statement)

    batch = [_converted(f"s{i}@example.com") for i in range(40)] + [_converted("s1@example.com")]
    sa_event.listen(runtime.engine, "before_cursor_execute", record)
    try:
        assert dispatcher.dispatch_batch(batch) == [True] * 41
    finally:
        sa_event.remove(runtime.engine, "before_cursor_execute", record)

    touching_contacts = [s for s in statements if " contacts" in s and "outbox" not in s and "inbox" not in s]
    assert len([s for s in touching_contacts if s.lstrip().startswith("SELECT")]) == 1
    assert len([s for s in touching_contacts if s.lstrip().startswith("INSERT")]) == 1
    # Inbox rows, contacts, outbox rows: a handful of statements for 41 events, not five per event.
    assert len(statements) < 12, statements
