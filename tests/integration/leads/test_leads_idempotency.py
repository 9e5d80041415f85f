"""`Idempotency-Key` on `POST /api/v1/leads` on the real PostgreSQL: a retry captures the lead once."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from services.leads.models import IdempotencyRecord, Lead, LeadTouch, OutboxMessage
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

PATH = "/api/v1/leads"


def _rw(**extra) -> dict:
    return {**identity_headers("leads:read", "leads:write"), **extra}


@pytest.fixture
def leads(service_app):
    return service_app("leads")


def _count(app, model, *where) -> int:
    with app.extensions["crm.runtime"].session_factory() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def _events(app, event_type: str) -> int:
    return _count(app, OutboxMessage, OutboxMessage.event_type == event_type)


def test_a_replay_with_the_same_key_returns_the_first_response_and_captures_nothing_new(leads):
    client, key = leads.test_client(), str(uuid.uuid4())
    body = {"email": "ann@corp.example", "source": "web_form", "company": "Corp"}

    first = client.post(PATH, headers=_rw(**{"Idempotency-Key": key}), json=body)
    again = client.post(PATH, headers=_rw(**{"Idempotency-Key": key}), json=body)

    assert first.status_code == again.status_code == 201, first.text
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert _count(leads, Lead) == 1 and _count(leads, LeadTouch) == 1
    assert _events(leads, "crm.lead.created") == 1
    assert first.json["touch_count"] == 1


def test_a_touch_on_an_open_lead_is_a_200_that_is_stored_and_replayed_once(leads):
    client, key = leads.test_client(), str(uuid.uuid4())
    assert client.post(PATH, headers=_rw(), json={"email": "bo@corp.example"}).status_code == 201
    body = {"email": "BO@corp.example", "source": "event"}

    first = client.post(PATH, headers=_rw(**{"Idempotency-Key": key}), json=body)
    again = client.post(PATH, headers=_rw(**{"Idempotency-Key": key}), json=body)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert first.json["touch_count"] == 2  # the replay recorded no third touch
    assert _count(leads, Lead) == 1 and _count(leads, LeadTouch) == 2
    assert _count(leads, IdempotencyRecord) == 1


def test_the_same_key_with_a_different_body_is_a_422_naming_the_key(leads):
    client, key = leads.test_client(), str(uuid.uuid4())
    assert client.post(PATH, headers=_rw(**{"Idempotency-Key": key}), json={"email": "cy@corp.example"}).status_code == 201

    r = client.post(PATH, headers=_rw(**{"Idempotency-Key": key}), json={"email": "di@corp.example"})

    assert r.status_code == 422 and list(r.json["errors"]) == ["Idempotency-Key"]
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert _count(leads, Lead) == 1 and _events(leads, "crm.lead.created") == 1


def test_without_a_key_every_post_runs_as_before(leads):
    client = leads.test_client()
    body = {"email": "ed@corp.example"}

    first = client.post(PATH, headers=_rw(), json=body)
    second = client.post(PATH, headers=_rw(), json=body)

    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json["touch_count"] == 2 and "Idempotent-Replayed" not in second.headers
    assert _count(leads, IdempotencyRecord) == 0 and _count(leads, LeadTouch) == 2
