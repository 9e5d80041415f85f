"""The customer 360 timeline on the real PostgreSQL: other services' events through the handlers, and the API."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from crm.registry import SUITE
from services.common.catalog import make_event, parse_event
from services.common.consumer import InboxDispatcher
from services.contacts.handlers import HANDLERS
from services.contacts.models import (
    ContactLead,
    ContactPurchaseSummary,
    InboxEntry,
    TimelineEntry,
)
from services.contacts.timeline import KINDS
from tests.support.auth import identity_headers
from tests.support.suite import wait_until

from .test_worker import _publish

pytestmark = pytest.mark.integration

BASE = "/api/v1/contacts"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
READ = identity_headers("contacts:read")


def _event(event_type: str, data: dict, *, source: str = "/services/loyalty"):
    # What a consumer receives: the wire form, parsed and validated again.
    return parse_event(make_event(event_type, data, source=source).to_json())


def _purchase(contact_id, *, at=T0, amount="120.00", purchase_id=None, points=12):
    return _event("crm.purchase.recorded", {
        "purchase_id": purchase_id or uuid.uuid4(), "member_id": uuid.uuid4(), "contact_id": contact_id,
        "program_id": uuid.uuid4(), "amount": Decimal(amount), "currency": "EUR", "occurred_at": at,
        "points": points})


def _lead_created(lead_id, email="ann@example.com"):
    return _event("crm.lead.created", {"lead_id": lead_id, "email": email, "source": "web_form", "score": 40},
                  source="/services/leads")


def _lead_touched(lead_id, at):
    return _event("crm.lead.touched", {"lead_id": lead_id, "touch_id": uuid.uuid4(), "source": "event",
                                       "campaign": "spring", "occurred_at": at}, source="/services/leads")


def _converted(lead_id, email="ann@example.com"):
    return _event("crm.lead.converted", {"lead_id": lead_id, "email": email, "first_name": "Ann"},
                  source="/services/leads")


def _tier_changed(contact_id, at):
    return _event("crm.member.tier_changed", {"member_id": uuid.uuid4(), "contact_id": contact_id,
                                              "program_id": uuid.uuid4(), "tier": "gold", "previous_tier": "silver",
                                              "occurred_at": at})


def _offer_sent(contact_id, at):
    return _event("crm.offer.sent", {"offer_id": uuid.uuid4(), "contact_id": contact_id, "channel": "email",
                                     "name": "Spring sale", "occurred_at": at}, source="/services/leads")


@pytest.fixture
def dispatcher(runtime):
    return InboxDispatcher(lambda **kw: runtime.uow(**kw), InboxEntry, HANDLERS)


def _contact(client, rw_headers, email="ann@example.com") -> str:
    response = client.post(BASE, json={"email": email}, headers=rw_headers)
    assert response.status_code == 201, response.json
    return response.json["id"]


def _timeline(client, contact_id, **query) -> dict:
    response = client.get(f"{BASE}/{contact_id}/timeline", query_string=query, headers=READ)
    assert response.status_code == 200, response.json
    return response.json


def _entries(runtime) -> int:
    with runtime.session_factory() as s:
        return s.scalar(select(func.count()).select_from(TimelineEntry))


# -- the projection -------------------------------------------------------------------------------------------

def test_a_redelivered_or_republished_purchase_adds_one_entry_and_is_counted_once(dispatcher, client, rw_headers,
                                                                                    runtime):
    contact_id = uuid.UUID(_contact(client, rw_headers))
    purchase_id = uuid.uuid4()
    first, republished = _purchase(contact_id, purchase_id=purchase_id), _purchase(contact_id, purchase_id=purchase_id)
    assert dispatcher.dispatch(first) is True
    assert dispatcher.dispatch(first) is False  # the inbox absorbs the redelivery
    assert dispatcher.dispatch_batch([republished, republished]) == [True, False]
    [entry] = _timeline(client, contact_id)["items"]
    assert (entry["id"], entry["kind"], entry["summary"]) == (str(purchase_id), "purchase",
                                                              "Purchase 120.00 EUR, 12 points")
    assert entry["data"]["amount"] == "120.00" and entry["source"] == "loyalty"
    with runtime.session_factory() as s:
        assert s.get(ContactPurchaseSummary, contact_id).purchase_count == 1


def test_a_leads_history_from_before_its_conversion_joins_the_contacts_stream(dispatcher, client, runtime):
    lead_id, second_lead = uuid.uuid4(), uuid.uuid4()
    touched_at = datetime.now(UTC) - timedelta(hours=1)
    dispatcher.dispatch_batch([_lead_created(lead_id), _lead_touched(lead_id, touched_at)])
    dispatcher.dispatch(_converted(lead_id))
    # A second lead of the same person, matched to the contact the first one became.
    dispatcher.dispatch(_lead_created(second_lead, "ANN@example.com"))
    dispatcher.dispatch(_converted(second_lead, "ANN@example.com"))
    with runtime.session_factory() as s:
        links = {row.lead_id: row.contact_id for row in s.scalars(select(ContactLead))}
    assert set(links) == {lead_id, second_lead} and len(set(links.values())) == 1
    contact_id = links[lead_id]

    items = _timeline(client, contact_id)["items"]
    assert [(item["kind"], item["lead_id"]) for item in items] == [
        ("lead_converted", str(second_lead)), ("lead_created", str(second_lead)),
        ("lead_converted", str(lead_id)), ("lead_created", str(lead_id)), ("lead_touched", str(lead_id))]
    converted = items[2]
    assert converted["contact_id"] == str(contact_id) and converted["data"]["matched"] is False
    assert items[0]["data"]["matched"] is True and items[0]["summary"].startswith("Lead converted, matched")
    assert items[4]["summary"] == "Lead captured again from event / spring"


def test_the_stream_is_newest_first_across_kinds_and_sources(dispatcher, client, rw_headers):
    contact_id = _contact(client, rw_headers)
    cid = uuid.UUID(contact_id)
    call = client.post(f"{BASE}/{contact_id}/interactions", headers=rw_headers, json={
        "type": "call", "channel": "phone", "direction": "outbound", "summary": "Welcome call",
        "occurred_at": (T0 + timedelta(days=2)).isoformat()}).json
    complaint = client.post(f"{BASE}/{contact_id}/interactions", headers=rw_headers, json={
        "type": "complaint", "channel": "email", "direction": "inbound", "category": "delivery",
        "summary": "Parcel late", "occurred_at": (T0 + timedelta(days=4)).isoformat()}).json
    purchase = _purchase(cid, at=T0 + timedelta(days=1))
    dispatcher.dispatch_batch([purchase, _tier_changed(cid, T0 + timedelta(days=3)),
                               _offer_sent(cid, T0 - timedelta(days=1))])
    kinds = [(item["kind"], item["source"]) for item in _timeline(client, contact_id)["items"]]
    assert kinds == [("complaint", "contacts"), ("tier_changed", "loyalty"), ("interaction", "contacts"),
                     ("purchase", "loyalty"), ("offer_sent", "leads")]
    items = _timeline(client, contact_id)["items"]
    assert items[0]["id"] == complaint["id"] and items[2]["id"] == call["id"]
    assert items[1]["summary"] == "Tier changed from silver to gold"
    assert items[4]["summary"] == "Offer “Spring sale” sent by email"


def test_points_and_enrolment_events_are_on_the_stream_once_each(dispatcher, client, rw_headers):
    contact_id = _contact(client, rw_headers)
    cid, member_id, program_id = uuid.UUID(contact_id), uuid.uuid4(), uuid.uuid4()
    common = {"member_id": member_id, "contact_id": cid, "program_id": program_id}
    earned = _event("crm.points.earned", {**common, "transaction_id": uuid.uuid4(), "points": 12, "balance": 12})
    events = [
        _event("crm.member.enrolled", common), earned,
        _event("crm.points.redeemed", {**common, "transaction_id": uuid.uuid4(), "points": 5, "balance": 7,
                                       "reason": "coffee"}),
        _event("crm.points.adjusted", {**common, "transaction_id": uuid.uuid4(), "kind": "adjust", "points": 3,
                                       "balance": 10, "lifetime_points": 15, "reason": "goodwill"}),
    ]
    assert dispatcher.dispatch_batch(events) == [True] * 4
    # The same transaction published again under a new event id is the same entry.
    assert dispatcher.dispatch(_event("crm.points.earned", earned.data)) is True
    summaries = {item["kind"]: item["summary"] for item in _timeline(client, contact_id)["items"]}
    assert summaries == {"enrolled": "Enrolled in the loyalty program",
                         "points_earned": "Earned 12 points (balance 12)",
                         "points_redeemed": "Redeemed 5 points (balance 7): coffee",
                         "points_adjusted": "Points adjusted by +3 (balance 10): goodwill"}


def test_a_batch_of_mixed_events_adds_its_entries_in_one_statement(dispatcher, runtime, client, rw_headers):
    cid = uuid.UUID(_contact(client, rw_headers))
    batch = [_offer_sent(cid, T0 + timedelta(minutes=i)) for i in range(20)] + [
        _tier_changed(cid, T0), _lead_created(uuid.uuid4())]
    statements: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _executemany):
        statements.append(statement)

    sa_event.listen(runtime.engine, "before_cursor_execute", record)
    try:
        assert dispatcher.dispatch_batch(batch) == [True] * 22
    finally:
        sa_event.remove(runtime.engine, "before_cursor_execute", record)
    assert len([s for s in statements if "INSERT INTO timeline_entries" in s]) == 1
    assert _entries(runtime) == 22


# -- the API --------------------------------------------------------------------------------------------------

def test_pages_walk_every_entry_once_newest_first_with_ties_by_arrival(dispatcher, client, rw_headers):
    contact_id = _contact(client, rw_headers)
    cid = uuid.UUID(contact_id)
    # Three entries share one instant: among them the later arrival comes first.
    times = [T0, T0 + timedelta(hours=2), T0 + timedelta(hours=1), T0 + timedelta(hours=1), T0 + timedelta(hours=1),
             T0 - timedelta(hours=5), T0 + timedelta(hours=3)]
    events = [_offer_sent(cid, at) for at in times]
    for event in events:
        dispatcher.dispatch(event)
    expected = [str(events[i].id) for i in sorted(range(len(times)), key=lambda i: (times[i], i), reverse=True)]
    assert _walk(client, contact_id) == expected
    # From the start: oldest first, ties by arrival the other way round.
    assert _walk(client, contact_id, sort="occurred_at") == list(reversed(expected))


def _walk(client, contact_id, **query) -> list[str]:
    seen, cursor = [], None
    while True:
        page = _timeline(client, contact_id, limit=2, **query, **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def test_the_kind_filter_is_repeatable(dispatcher, client, rw_headers):
    contact_id = _contact(client, rw_headers)
    cid = uuid.UUID(contact_id)
    dispatcher.dispatch_batch([_purchase(cid), _tier_changed(cid, T0), _offer_sent(cid, T0)])
    assert [i["kind"] for i in _timeline(client, contact_id, kind="purchase")["items"]] == ["purchase"]
    kinds = {i["kind"] for i in _timeline(client, contact_id, kind=["purchase", "offer_sent"])["items"]}
    assert kinds == {"purchase", "offer_sent"}
    assert _timeline(client, contact_id, kind="feedback")["items"] == []


@pytest.mark.parametrize("query, field", [
    ({"kind": "gossip"}, "kind"), ({"kind": ["purchase", "nope"]}, "kind"), ({"limit": 500}, "limit"),
    ({"cursor": "not-a-cursor"}, "cursor"), ({"sort": "kind"}, "sort"),
])
def test_bad_timeline_arguments_are_a_422_naming_them(client, rw_headers, query, field):
    contact_id = _contact(client, rw_headers)
    response = client.get(f"{BASE}/{contact_id}/timeline", query_string=query, headers=READ)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert field in response.json["errors"]


def test_every_kind_is_accepted_by_the_filter(client, rw_headers):
    contact_id = _contact(client, rw_headers)
    assert _timeline(client, contact_id, kind=list(KINDS)) == {"items": [], "next_cursor": None}


def test_an_unknown_contact_is_a_404_even_when_events_already_name_it(dispatcher, client):
    unknown = uuid.uuid4()
    dispatcher.dispatch(_purchase(unknown))  # a purchase may arrive before (or after) its contact
    response = client.get(f"{BASE}/{unknown}/timeline", headers=READ)
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


def test_a_page_is_one_query(dispatcher, client, rw_headers, runtime):
    contact_id = _contact(client, rw_headers)
    dispatcher.dispatch_batch([_purchase(uuid.UUID(contact_id)), _offer_sent(uuid.UUID(contact_id), T0)])
    statements: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _executemany):
        statements.append(statement)

    sa_event.listen(runtime.engine, "before_cursor_execute", record)
    try:
        assert len(_timeline(client, contact_id, limit=1)["items"]) == 1
    finally:
        sa_event.remove(runtime.engine, "before_cursor_execute", record)
    assert len(statements) == 1, statements


def test_the_timeline_needs_contacts_read(client, rw_headers):
    contact_id = _contact(client, rw_headers)
    for headers in (identity_headers("contacts:write"), identity_headers("leads:read"),
                    identity_headers("contacts:read", kind="partner", partner_id=str(uuid.uuid4()))):
        response = client.get(f"{BASE}/{contact_id}/timeline", headers=headers)
        assert response.status_code == 403 and response.mimetype == "application/problem+json"
    assert client.get(f"{BASE}/{contact_id}/timeline", headers=identity_headers("contacts:*")).status_code == 200


# -- through the broker ---------------------------------------------------------------------------------------

def test_the_worker_projects_an_offer_nobody_publishes_yet_from_the_broker(contacts_settings, amqp_url, client,
                                                                           rw_headers, runtime):
    contact_id = _contact(client, rw_headers)
    worker = SUITE.create_worker("contacts", contacts_settings)
    worker.start()
    try:
        offer = make_event("crm.offer.sent", {"offer_id": uuid.uuid4(), "contact_id": contact_id, "channel": "sms",
                                              "occurred_at": T0}, source="/services/leads")
        _publish(amqp_url, contacts_settings.retry_delays, offer)
        wait_until(lambda: _entries(runtime) == 1, timeout=30, message="the offer on the timeline")
    finally:
        worker.stop()
    [entry] = _timeline(client, contact_id)["items"]
    assert (entry["id"], entry["kind"], entry["summary"]) == (str(offer.id), "offer_sent", "Offer sent by sms")
