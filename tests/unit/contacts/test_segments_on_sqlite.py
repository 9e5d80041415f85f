"""Segment rules evaluated on SQLite: the same SQL as on PostgreSQL (JSON, money in units, snapshots), and a
membership refresh with its events."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from services.contacts.models import (
    AnalyticsRefresh,
    AttributeDefinition,
    Contact,
    ContactPurchaseMetric,
    ContactPurchaseSummary,
    CustomerAnalytics,
    OutboxMessage,
    Segment,
)
from services.contacts.segments import service
from services.contacts.segments.membership import refresh_memberships

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def _contact(session, name, **values) -> uuid.UUID:
    contact = Contact(id=uuid.uuid4(), email=f"{name}@example.com", email_normalized=f"{name}@example.com",
                      **{"tags": [], "attributes": {}, "consents": {}, **values})
    session.add(contact)
    session.flush()
    return contact.id


@pytest.fixture
def people(runtime):
    with runtime.session_factory() as s, s.begin():
        s.add_all([AttributeDefinition(name="score", type="number", label="Score"),
                   AttributeDefinition(name="vip", type="boolean", label="VIP")])
        ids = SimpleNamespace(
            ann=_contact(s, "ann", tags=["vip"], attributes={"score": "19.9", "vip": True},
                         consents={"email:marketing": {"status": "granted"}}),
            bob=_contact(s, "bob", attributes={"score": "5"}),
        )
        s.add(ContactPurchaseMetric(contact_id=ids.ann, currency="EUR", total=Decimal("100.5"), count=2,
                                    returned=Decimal("10.25"), margin=Decimal("3"), discount=Decimal(0)))
        s.add(ContactPurchaseSummary(contact_id=ids.ann, purchase_count=2, first_purchase_at=NOW - timedelta(days=300),
                                     last_purchase_at=NOW - timedelta(days=10)))
        refresh = AnalyticsRefresh(id=uuid.uuid4(), status="completed", trigger="cli", currency="EUR", as_of=NOW,
                                   parameters={}, requested_by="test")
        s.add(refresh)
        s.flush()
        s.add(CustomerAnalytics(refresh_id=refresh.id, contact_id=ids.ann, abc_class="A", clv_units=1_234_500))
        ids.refresh_id = refresh.id
    return ids


def _matching(runtime, rules, currency="EUR") -> set[uuid.UUID]:
    page = service.preview_segment(runtime.uow(read_only=True), rules, currency=currency, limit=50, now=NOW)
    assert page["count"] == len(page["items"])
    return {item["id"] for item in page["items"]}


@pytest.mark.parametrize(("condition", "who"), [
    ({"field": "tags", "op": "has_any", "value": ["vip", "x"]}, {"ann"}),
    ({"field": "attributes.score", "op": "between", "value": ["5", "10"]}, {"bob"}),
    ({"field": "attributes.vip", "op": "ne", "value": True}, {"bob"}),
    ({"field": "consent.email.marketing", "op": "eq", "value": "granted"}, {"ann"}),
    ({"field": "net_spent", "op": "eq", "value": "90.25"}, {"ann"}),
    ({"field": "margin", "op": "gt", "value": "2.9999"}, {"ann"}),
    ({"field": "total_spent", "op": "eq", "value": "0"}, {"bob"}),
    ({"field": "last_purchase_at", "op": "after", "value": "-2w"}, {"ann"}),
    ({"field": "first_purchase_at", "op": "before", "value": "2025-01-01T00:00:00Z"}, set()),
    ({"field": "clv", "op": "eq", "value": "123.45"}, {"ann"}),
    ({"field": "abc_class", "op": "not_in", "value": ["A"]}, {"bob"}),
    ({"field": "email_domain", "op": "in", "value": ["example.com"]}, {"ann", "bob"}),
])
def test_conditions_match_on_sqlite(runtime, people, condition, who):
    assert _matching(runtime, {"all": [condition]}) == {getattr(people, name) for name in who}


def test_a_membership_refresh_on_sqlite_announces_each_change_once(runtime, people):
    with runtime.session_factory() as s, s.begin():
        s.add(Segment(id=uuid.uuid4(), name="A", rules={"all": [{"field": "abc_class", "op": "eq", "value": "A"}]},
                      currency="EUR", created_by="test"))
    refresh = SimpleNamespace(id=people.refresh_id, currency="EUR")
    for expected in ({"entered": 1, "left": 0, "members": 1}, {"entered": 0, "left": 0, "members": 1}):
        uow = runtime.uow()
        with uow:
            assert refresh_memberships(uow, refresh, NOW) == {"A": expected}
            uow.commit()
    with runtime.session_factory() as s:
        [payload] = s.scalars(select(OutboxMessage.payload)).all()
        assert s.scalar(select(Segment.member_count)) == 1
    event = json.loads(payload)
    assert (event["type"], event["subject"], event["data"]["contact_id"], event["data"]["refresh_id"]) == (
        "crm.segment.entered", str(people.ann), str(people.ann), str(people.refresh_id))
