"""crm.lead.touched on the real PostgreSQL: a repeated capture of an open lead announces its touch, once."""
from __future__ import annotations

import json
import uuid
from datetime import datetime

import pytest
from sqlalchemy import select

from services.leads.models import LeadTouch, OutboxMessage
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

RW = identity_headers("leads:read", "leads:write")


def _events(app, event_type: str) -> list[dict]:
    with app.extensions["crm.runtime"].session_factory() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.event_type == event_type)
                         .order_by(OutboxMessage.seq))
        return [json.loads(row.payload) for row in rows]


def test_capturing_an_open_lead_again_announces_the_touch_with_its_own_id(service_app):
    leads = service_app("leads")
    client = leads.test_client()
    first = client.post("/api/v1/leads", headers=RW, json={"email": "ann@corp.example", "source": "web_form"})
    assert first.status_code == 201 and _events(leads, "crm.lead.touched") == []

    again = client.post("/api/v1/leads", headers={**RW, "Idempotency-Key": str(uuid.uuid4())},
                        json={"email": "ANN@corp.example", "source": "event", "campaign": "spring"})
    assert again.status_code == 200
    [event] = _events(leads, "crm.lead.touched")
    with leads.extensions["crm.runtime"].session_factory() as s:
        touch = s.scalar(select(LeadTouch).order_by(LeadTouch.seq.desc()))
    assert event["subject"] == first.json["id"]
    assert {k: v for k, v in event["data"].items() if k != "occurred_at"} == {
        "lead_id": first.json["id"], "touch_id": str(touch.id), "source": "event", "campaign": "spring"}
    assert datetime.fromisoformat(event["data"]["occurred_at"]) == touch.created_at


def test_a_replayed_capture_announces_no_second_touch(service_app):
    leads = service_app("leads")
    client = leads.test_client()
    client.post("/api/v1/leads", headers=RW, json={"email": "bob@corp.example"})
    headers = {**RW, "Idempotency-Key": str(uuid.uuid4())}
    for _ in range(2):
        assert client.post("/api/v1/leads", headers=headers, json={"email": "bob@corp.example"}).status_code == 200
    assert len(_events(leads, "crm.lead.touched")) == 1
