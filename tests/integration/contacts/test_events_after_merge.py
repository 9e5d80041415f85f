"""Events published before their service handled a merge still name the merged id: they land on the survivor."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from services.common.catalog import make_event, parse_event
from services.common.consumer import InboxDispatcher
from services.contacts.handlers import HANDLERS
from services.contacts.models import ContactPurchase, InboxEntry, TimelineEntry
from tests.support.auth import identity_headers
from tests.support.spend import spend_line

pytestmark = pytest.mark.integration

BASE = "/api/v1/contacts"
MERGER = identity_headers("contacts:read", "contacts:write", "contacts:merge")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _contact(client, email) -> str:
    response = client.post(BASE, json={"email": email}, headers=MERGER)
    assert response.status_code == 201, response.json
    return response.json["id"]


def _event(event_type, data):
    return parse_event(make_event(event_type, data, source="/services/loyalty").to_json())


def test_a_purchase_and_points_naming_a_merged_contact_count_on_the_survivor(client, runtime):
    survivor, merged = _contact(client, "sam@example.com"), _contact(client, "sam.o@example.com")
    first = client.post(f"{BASE}/merges", json={"survivor_id": survivor, "merged_id": merged}, headers=MERGER)
    assert first.status_code == 200, first.json
    purchase_id, member_id, program_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    dispatcher = InboxDispatcher(lambda **kw: runtime.uow(**kw), InboxEntry, HANDLERS)
    dispatcher.dispatch_batch([
        _event("crm.purchase.recorded", {
            "purchase_id": purchase_id, "member_id": member_id, "contact_id": uuid.UUID(merged),
            "program_id": program_id, "amount": Decimal("12.00"), "currency": "EUR", "occurred_at": T0, "points": 12}),
        _event("crm.points.earned", {
            "transaction_id": uuid.uuid4(), "member_id": member_id, "contact_id": uuid.UUID(merged), "points": 12,
            "balance": 12, "purchase_id": purchase_id, "program_id": program_id}),
    ])

    shown = client.get(f"{BASE}/{survivor}", headers=MERGER).json["purchases"]
    assert shown["count"] == 1 and shown["total_spend"] == [spend_line("EUR", "12.0000", 1)]
    with runtime.session_factory() as s:
        assert s.scalar(select(ContactPurchase.contact_id).where(ContactPurchase.purchase_id == purchase_id)) \
            == uuid.UUID(survivor)
        owners = set(s.scalars(select(TimelineEntry.contact_id).where(TimelineEntry.source == "loyalty")))
    assert owners == {uuid.UUID(survivor)}
