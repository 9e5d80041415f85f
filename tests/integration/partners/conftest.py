"""Fixtures for the partners service on the real PostgreSQL."""
from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from sqlalchemy import func, select

from services.partners.models import Contract, ContractTerms, OutboxMessage, Partner
from tests.support.auth import identity_headers


class FreshIdentity(Mapping):
    """Identity headers signed anew on every use: a token made at import would expire during a long run."""

    def __init__(self, *scopes: str):
        self.scopes = scopes

    def _headers(self) -> dict[str, str]:
        return identity_headers(*self.scopes)

    def __getitem__(self, name):
        return self._headers()[name]

    def __iter__(self):
        return iter(self._headers())

    def __len__(self):
        return len(self._headers())


RW = FreshIdentity("partners:read", "partners:write")
READ = FreshIdentity("partners:read")

TERMS = {
    "payment_terms_days": 30, "discount_percent": "2.50", "delivery_lead_time_days": 14,
    "minimum_order_volume": "1000.000", "currency": "EUR", "effective_from": "2026-01-01",
    "effective_to": "2026-12-31", "auto_renew": True, "notice_period_days": 60,
}


@pytest.fixture
def app(service_app):
    return service_app("partners")


@pytest.fixture
def partners_settings(app):
    """The app's settings: a worker built from them shares its database and vhost."""
    return app.extensions["crm.settings"]


@pytest.fixture
def client(app):
    return app.test_client()


class Store:
    """Reads what the service wrote, to assert on state rather than on responses alone."""

    def __init__(self, runtime):
        self.runtime = runtime

    def count(self, model, *where) -> int:
        with self.runtime.session_factory() as s:
            return s.scalar(select(func.count()).select_from(model).where(*where))

    def partners(self) -> int:
        return self.count(Partner)

    def contracts(self) -> int:
        return self.count(Contract)

    def terms_versions(self) -> int:
        return self.count(ContractTerms)

    def events(self, event_type: str | None = None) -> list[dict]:
        """The CloudEvents in the outbox, oldest first."""
        stmt = select(OutboxMessage).order_by(OutboxMessage.seq)
        if event_type:
            stmt = stmt.where(OutboxMessage.event_type == event_type)
        with self.runtime.session_factory() as s:
            return [json.loads(row.payload) for row in s.scalars(stmt)]


@pytest.fixture
def store(app):
    return Store(app.extensions["crm.runtime"])


class Api:
    """Creates partners and contracts through the HTTP API with an internal read-write key."""

    def __init__(self, client):
        self.client = client

    def partner(self, name="Acme Supplies", type="supplier", **fields) -> dict:
        r = self.client.post("/api/v1/partners", headers=RW, json={"name": name, "type": type, **fields})
        assert r.status_code == 201, r.text
        return r.json

    def contract(self, partner_id: str, title="Supply agreement", **terms) -> dict:
        r = self.client.post(f"/api/v1/partners/{partner_id}/contracts", headers=RW,
                             json={"title": title, "terms": {**TERMS, **terms}})
        assert r.status_code == 201, r.text
        return r.json

    def change_terms(self, contract_id: str, version: int, **changes) -> dict:
        r = self.client.post(f"/api/v1/contracts/{contract_id}/terms", json=changes,
                             headers={**RW, "If-Match": f'W/"{version}"'})
        assert r.status_code == 201, r.text
        return r.json


@pytest.fixture
def api(client):
    return Api(client)
