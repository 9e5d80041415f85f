"""End to end through the gateway: purchases, a return and a complaint move a customer's stage and lifetime value
at the next refresh, and a saved segment's membership follows.

A converted lead buys once; a segment holds this person while they are `new`. A refresh asked for over the API
is run by the contacts worker: the record shows the stage and CLV and the segment has the member. A second
purchase, the return of the first and a complaint follow; after the next refresh the person is `general`, the
CLV is lower (margin given back, cost to serve) and the segment has lost the member.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tests.support.fixtures import Client
from tests.support.suite import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def analyst(suite):
    key = suite.create_key(scopes="leads:*,contacts:*,contacts:analytics,loyalty:*", name="e2e-analytics")
    return Client(suite.gateway_url, key)


def _refreshed(c) -> dict:
    """Ask for a refresh and wait until the worker has completed it."""
    asked = c.post("/api/v1/analytics/refreshes", json={"currency": "EUR"})
    assert asked.status_code == 202, asked.text
    location = asked.headers["Location"]

    def completed():
        refresh = c.get(location).json()
        assert refresh["status"] != "failed", refresh
        return refresh if refresh["status"] == "completed" else None

    return wait_until(completed, timeout=60, message="refresh completed")


def _purchase_count(c, contact_id: str, count: int):
    return lambda: (p := c.get(f"/api/v1/contacts/{contact_id}").json()["purchases"])["count"] == count and p


def test_a_purchase_a_return_and_a_complaint_move_stage_clv_and_segment_membership(analyst):
    c = analyst
    email = f"analytics-{uuid.uuid4().hex[:8]}@shop.example"
    lead = c.post("/api/v1/leads", json={"email": email, "source": "referral"}).json()
    assert c.post(f"/api/v1/leads/{lead['id']}/convert").status_code == 202
    contact_id = wait_until(lambda: c.get(f"/api/v1/leads/{lead['id']}").json().get("contact_id"), timeout=30,
                            message="lead converted")
    wait_until(lambda: c.get("/api/v1/loyalty/members", params={"contact_id": contact_id}).json()["items"],
               timeout=30, message="contact auto-enrolled")

    day = datetime.now(timezone.utc) - timedelta(days=3)
    first = c.post("/api/v1/loyalty/purchases", json={
        "contact_id": contact_id, "amount": "100.00", "margin": "30.00", "currency": "EUR",
        "occurred_at": day.isoformat(), "external_id": f"receipt-{uuid.uuid4().hex}"})
    assert first.status_code == 201, first.text
    wait_until(_purchase_count(c, contact_id, 1), timeout=30, message="purchase counted by contacts")

    segment = c.post("/api/v1/segments", json={
        "name": f"new-{email}", "rules": {"all": [{"field": "email", "op": "eq", "value": email},
                                                  {"field": "stage", "op": "eq", "value": "new"}]}})
    assert segment.status_code == 201, segment.text
    members_url = f"/api/v1/segments/{segment.json()['id']}/members"

    before = _refreshed(c)
    record = c.get(f"/api/v1/contacts/{contact_id}").json()["analytics"]
    assert record["snapshot_id"] == before["id"] and record["currency"] == "EUR"
    assert record["stage"] == "new" and record["pyramid_level"] != "prospect"
    assert record["abc_class"] in ("A", "B", "C") and record["rfm_segment"] is not None
    assert Decimal(record["historical_margin"]) == Decimal("30") and Decimal(record["cost_to_serve"]) == 0
    clv_before = Decimal(record["clv"])
    assert clv_before >= Decimal("30")
    assert [m["id"] for m in c.get(members_url).json()["items"]] == [contact_id]
    assert c.get(f"/api/v1/segments/{segment.json()['id']}").json()["member_count"] == 1

    second = c.post("/api/v1/loyalty/purchases", json={
        "contact_id": contact_id, "amount": "50.00", "margin": "5.00", "currency": "EUR",
        "occurred_at": (day + timedelta(days=1)).isoformat(), "external_id": f"receipt-{uuid.uuid4().hex}"})
    assert second.status_code == 201, second.text
    returned = c.post(f"/api/v1/loyalty/purchases/{first.json()['id']}/returns", json={
        "amount": "100.00", "occurred_at": (day + timedelta(days=2)).isoformat()})
    assert returned.status_code == 201, returned.text
    complaint = c.post(f"/api/v1/contacts/{contact_id}/interactions", json={
        "type": "complaint", "channel": "phone", "direction": "inbound", "category": "product",
        "summary": "Returned: it broke", "occurred_at": (day + timedelta(days=2)).isoformat()})
    assert complaint.status_code == 201, complaint.text
    wait_until(lambda: (p := _purchase_count(c, contact_id, 2)()) and Decimal(p["total_spend"][0]["returned"]) > 0,
               timeout=30, message="second purchase and the return counted by contacts")

    after = _refreshed(c)
    record = c.get(f"/api/v1/contacts/{contact_id}").json()["analytics"]
    assert record["snapshot_id"] == after["id"]
    assert record["stage"] == "general"
    # 30 + 5 of margin, 30 given back with the return; a complaint costs 25 by default.
    assert Decimal(record["historical_margin"]) == Decimal("5") and Decimal(record["cost_to_serve"]) == Decimal("25")
    assert Decimal(record["clv"]) < clv_before
    assert c.get(members_url).json()["items"] == []
    assert c.get(f"/api/v1/segments/{segment.json()['id']}").json()["member_count"] == 0
