"""Helpers of the loyalty integration tests: headers, bodies, counts and the recorded events."""
from __future__ import annotations

import json
import uuid

from sqlalchemy import func, select

from services.loyalty.models import OutboxMessage
from tests.support.auth import identity_headers

AT = "2026-03-14T10:30:00Z"


def rw(**extra) -> dict:
    """Fresh read-write identity headers (a token lives 60 s; a module-level one would expire mid-run)."""
    return {**identity_headers("loyalty:read", "loyalty:write"), **extra}


def admin(**extra) -> dict:
    """Read-write identity headers with `loyalty:admin`: adjustments, reversals and programs need it."""
    return {**identity_headers("loyalty:read", "loyalty:write", "loyalty:admin"), **extra}


def count(app, model, *where) -> int:
    with app.extensions["crm.runtime"].session_factory() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def events(app, event_type: str) -> list[dict]:
    """The CloudEvents this service recorded in its outbox, oldest first."""
    with app.extensions["crm.runtime"].session_factory() as s:
        rows = s.scalars(select(OutboxMessage.payload).where(OutboxMessage.event_type == event_type)
                         .order_by(OutboxMessage.seq)).all()
    return [json.loads(r) for r in rows]


def purchase_body(contact_id=None, **changes) -> dict:
    body = {"contact_id": str(contact_id or uuid.uuid4()), "amount": "42.50", "currency": "EUR", "occurred_at": AT}
    body.update(changes)
    return body


def enrol(client, contact_id=None) -> dict:
    r = client.post("/api/v1/loyalty/members", headers=rw(), json={"contact_id": str(contact_id or uuid.uuid4())})
    assert r.status_code == 201, r.text
    return r.json


def credit(client, member_id: str, points: int) -> None:
    r = client.post(f"/api/v1/loyalty/members/{member_id}/adjustments", headers=admin(),
                    json={"points": points, "reason": "test credit"})
    assert r.status_code == 201, r.text


def balance(client, member_id: str) -> int:
    return client.get(f"/api/v1/loyalty/members/{member_id}", headers=rw()).json["balance"]
