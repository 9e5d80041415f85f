"""End to end through the gateway: the customer 360 shows a person's history from every service, in order.

A lead is captured and converted, the contact is enrolled, buys (earning points), complains and answers an NPS
survey; the timeline shows every one of these, newest first, whichever service recorded it.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.support.suite import wait_until

pytestmark = pytest.mark.e2e


def test_the_timeline_shows_lead_conversion_purchase_points_complaint_and_nps_newest_first(internal_client):
    c = internal_client
    email = f"timeline-{uuid.uuid4().hex[:8]}@shop.example"
    lead = c.post("/api/v1/leads", json={"email": email, "source": "referral", "first_name": "Tina"}).json()
    assert c.post(f"/api/v1/leads/{lead['id']}/convert").status_code == 202
    contact_id = wait_until(lambda: c.get(f"/api/v1/leads/{lead['id']}").json().get("contact_id"), timeout=30,
                            message="lead converted")
    member = wait_until(lambda: (items := c.get("/api/v1/loyalty/members", params={"contact_id": contact_id})
                                 .json()["items"]) and items[0], timeout=30, message="contact auto-enrolled")

    # Later than the conversion, each a day apart, so the expected order does not depend on arrival.
    day = datetime.now(timezone.utc) + timedelta(minutes=1)
    bought = c.post("/api/v1/loyalty/purchases", json={
        "contact_id": contact_id, "amount": "42.50", "currency": "EUR", "occurred_at": day.isoformat(),
        "external_id": f"receipt-{uuid.uuid4().hex}"})
    assert bought.status_code == 201, bought.text
    complaint = c.post(f"/api/v1/contacts/{contact_id}/interactions", json={
        "type": "complaint", "channel": "phone", "direction": "inbound", "category": "delivery",
        "summary": "The parcel came a week late", "occurred_at": (day + timedelta(minutes=1)).isoformat()})
    assert complaint.status_code == 201, complaint.text
    nps = c.post(f"/api/v1/contacts/{contact_id}/feedback", json={
        "kind": "nps", "score": 9, "comment": "Great once it arrived",
        "occurred_at": (day + timedelta(minutes=2)).isoformat()})
    assert nps.status_code == 201, nps.text

    wanted = {"lead_created", "lead_converted", "enrolled", "purchase", "points_earned", "complaint", "feedback"}

    def timeline():
        items = c.get(f"/api/v1/contacts/{contact_id}/timeline", params={"limit": 200}).json()["items"]
        return items if wanted <= {item["kind"] for item in items} else None

    items = wait_until(timeline, timeout=30, message="every kind on the timeline")
    kinds = [item["kind"] for item in items]
    times = [item["occurred_at"] for item in items]
    assert times == sorted(times, reverse=True), "newest first"
    # The three dated records lead, in the order they happened (newest first); the purchase and its points
    # share one time, and every lead and loyalty entry from before them follows.
    assert kinds[0] == "feedback" and kinds[1] == "complaint"
    assert set(kinds[2:4]) == {"purchase", "points_earned"}
    assert set(kinds[4:]) >= {"lead_created", "lead_converted", "enrolled"}
    assert kinds.index("lead_converted") < kinds.index("lead_created")
    by_kind = {item["kind"]: item for item in items}
    assert by_kind["purchase"]["data"]["amount"] == "42.50" and by_kind["purchase"]["source"] == "loyalty"
    assert by_kind["points_earned"]["data"]["points"] == bought.json()["points"]
    assert by_kind["complaint"]["data"]["status"] == "open" and by_kind["complaint"]["source"] == "contacts"
    assert by_kind["lead_created"]["lead_id"] == lead["id"] and by_kind["lead_created"]["source"] == "leads"
    assert by_kind["enrolled"]["data"]["member_id"] == member["id"]

    only = c.get(f"/api/v1/contacts/{contact_id}/timeline", params={"kind": ["complaint", "feedback"]}).json()
    assert [item["kind"] for item in only["items"]] == ["feedback", "complaint"]
