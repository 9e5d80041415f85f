"""End to end through the gateway: a converted lead is auto-enrolled, purchases earn points, the contact shows them."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tests.support.suite import wait_until

pytestmark = pytest.mark.e2e


def _converted_contact(c, email: str) -> str:
    lead = c.post("/api/v1/leads", json={"email": email, "source": "referral"}).json()
    assert c.post(f"/api/v1/leads/{lead['id']}/convert").status_code == 202
    done = wait_until(lambda: (r := c.get(f"/api/v1/leads/{lead['id']}").json())["status"] == "converted" and r,
                      timeout=30, message="lead converted")
    return done["contact_id"]


def _member_of(c, contact_id: str):
    items = c.get("/api/v1/loyalty/members", params={"contact_id": contact_id}).json()["items"]
    return items[0] if items else None


def test_a_converted_lead_is_enrolled_and_its_purchases_earn_points_and_show_on_the_contact(internal_client):
    c = internal_client
    contact_id = _converted_contact(c, f"buyer-{uuid.uuid4().hex[:6]}@shop.example")
    member = wait_until(lambda: _member_of(c, contact_id), timeout=30, message="contact auto-enrolled")
    assert member["balance"] == 0

    base = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
    amounts = ["19.99", "5.01", "100.00"]
    for i, amount in enumerate(amounts):
        r = c.post("/api/v1/loyalty/purchases", json={
            "contact_id": contact_id, "amount": amount, "currency": "EUR",
            "occurred_at": (base + timedelta(days=i)).isoformat(), "external_id": f"receipt-{uuid.uuid4().hex}"})
        assert r.status_code == 201, r.text
        assert r.json()["points"] > 0

    member = c.get(f"/api/v1/loyalty/members/{member['id']}").json()
    assert member["balance"] == member["lifetime_points"] == 19 + 5 + 100
    transactions = c.get(f"/api/v1/loyalty/members/{member['id']}/transactions").json()["items"]
    assert len(transactions) == 3

    def metrics():
        purchases = c.get(f"/api/v1/contacts/{contact_id}").json()["purchases"]
        return purchases if purchases["count"] == 3 else None

    purchases = wait_until(metrics, timeout=30, message="contact purchase metrics")
    assert [(t["currency"], Decimal(t["amount"])) for t in purchases["total_spend"]] == [("EUR", Decimal("125.00"))]
    assert purchases["first_purchase_at"].startswith("2026-11-01")
    assert purchases["last_purchase_at"].startswith("2026-11-03")
