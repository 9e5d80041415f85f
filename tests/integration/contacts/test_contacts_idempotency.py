"""`Idempotency-Key` on `POST /api/v1/contacts` on the real PostgreSQL: a retry creates the contact once."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from services.contacts.models import IdempotencyRecord

pytestmark = pytest.mark.integration

BASE = "/api/v1/contacts"


def _keys(runtime) -> int:
    with runtime.session_factory() as s:
        return s.scalar(select(func.count()).select_from(IdempotencyRecord))


def test_a_replay_with_the_same_key_returns_the_first_response_and_creates_nothing_new(client, rw_headers, store):
    key = str(uuid.uuid4())
    body = {"email": "ann@example.com", "first_name": "Ann"}

    first = client.post(BASE, headers={**rw_headers, "Idempotency-Key": key}, json=body)
    again = client.post(BASE, headers={**rw_headers, "Idempotency-Key": key}, json=body)

    assert first.status_code == again.status_code == 201, first.json
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert store.contact_count() == 1 and len(store.events("crm.contact.created")) == 1


def test_the_same_key_with_a_different_body_is_a_422_naming_the_key(client, rw_headers, store):
    key = str(uuid.uuid4())
    assert client.post(BASE, headers={**rw_headers, "Idempotency-Key": key},
                       json={"email": "ann@example.com"}).status_code == 201

    r = client.post(BASE, headers={**rw_headers, "Idempotency-Key": key}, json={"email": "bob@example.com"})

    assert r.status_code == 422 and list(r.json["errors"]) == ["Idempotency-Key"]
    assert r.mimetype == "application/problem+json"
    assert store.contact_count() == 1 and len(store.events("crm.contact.created")) == 1


def test_a_failed_create_releases_its_key_and_is_not_replayed(client, rw_headers, store, runtime):
    assert client.post(BASE, headers=rw_headers, json={"email": "ann@example.com"}).status_code == 201
    key = str(uuid.uuid4())

    r = client.post(BASE, headers={**rw_headers, "Idempotency-Key": key}, json={"email": "ANN@example.com"})

    assert r.status_code == 409 and "Idempotent-Replayed" not in r.headers
    assert _keys(runtime) == 0 and store.contact_count() == 1


def test_without_a_key_a_post_behaves_as_before(client, rw_headers, store, runtime):
    first = client.post(BASE, headers=rw_headers, json={"email": "ann@example.com"})
    second = client.post(BASE, headers=rw_headers, json={"email": "ann@example.com"})

    assert (first.status_code, second.status_code) == (201, 409)
    assert first.headers["Location"] == f"{BASE}/{first.json['id']}" and first.headers["ETag"]
    assert _keys(runtime) == 0 and store.contact_count() == 1
