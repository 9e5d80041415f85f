"""`Idempotency-Key` on the creating POSTs of partners and contracts, on the real PostgreSQL."""
from __future__ import annotations

import uuid

import pytest

from services.partners.models import IdempotencyRecord

from .conftest import RW, TERMS

pytestmark = pytest.mark.integration


def _with_key(key: str) -> dict:
    return {**RW, "Idempotency-Key": key}


def test_a_partner_replay_with_the_same_key_returns_the_first_response_and_registers_nothing_new(client, store):
    key, body = str(uuid.uuid4()), {"name": "Nordic Parts AB", "type": "distributor"}

    first = client.post("/api/v1/partners", headers=_with_key(key), json=body)
    again = client.post("/api/v1/partners", headers=_with_key(key), json=body)

    assert first.status_code == again.status_code == 201, first.text
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert store.partners() == 1 and len(store.events("crm.partner.created")) == 1


def test_a_contract_replay_with_the_same_key_returns_the_first_response_and_makes_nothing_new(client, api, store):
    partner = api.partner()
    path, key = f"/api/v1/partners/{partner['id']}/contracts", str(uuid.uuid4())
    body = {"title": "Supply agreement", "terms": TERMS}

    first = client.post(path, headers=_with_key(key), json=body)
    again = client.post(path, headers=_with_key(key), json=body)

    assert first.status_code == again.status_code == 201, first.text
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert store.contracts() == 1 and store.terms_versions() == 1
    assert len(store.events("crm.contract.created")) == 1


def test_the_same_key_with_a_different_body_is_a_422_naming_the_key(client, api, store):
    partner = api.partner()
    path, key = f"/api/v1/partners/{partner['id']}/contracts", str(uuid.uuid4())
    assert client.post(path, headers=_with_key(key), json={"title": "A", "terms": TERMS}).status_code == 201

    r = client.post(path, headers=_with_key(key), json={"title": "B", "terms": TERMS})
    other = client.post("/api/v1/partners", headers=_with_key(key), json={"name": "X", "type": "vendor"})

    assert r.status_code == 422 and list(r.json["errors"]) == ["Idempotency-Key"]
    assert other.status_code == 422 and list(other.json["errors"]) == ["Idempotency-Key"]
    assert store.contracts() == 1 and store.partners() == 1
    assert len(store.events("crm.contract.created")) == 1


def test_without_a_key_each_post_creates_as_before(client, store):
    body = {"name": "Acme", "type": "vendor"}

    first = client.post("/api/v1/partners", headers=RW, json=body)
    second = client.post("/api/v1/partners", headers=RW, json=body)

    assert (first.status_code, second.status_code) == (201, 201) and first.json["id"] != second.json["id"]
    assert first.headers["Location"] == f"/api/v1/partners/{first.json['id']}"
    assert store.partners() == 2 and store.count(IdempotencyRecord) == 0
