"""The partner portal on the real PostgreSQL: each partner sees only its own records (OWASP API1, BOLA)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from services.common.identity import generate_keypair
from tests.support.auth import identity_headers

from .conftest import READ, RW, TERMS

pytestmark = pytest.mark.integration

PORTAL = "/api/v1/partner-portal"


@dataclass
class Tenant:
    partner: dict
    contracts: list[dict]
    headers: dict

    @property
    def id(self) -> str:
        return self.partner["id"]

    @property
    def contract_ids(self) -> set[str]:
        return {c["id"] for c in self.contracts}


@pytest.fixture
def tenants(api):
    """Partners A and B with two contracts each; A's first contract has two versions of terms."""
    made = {}
    for name in ("A", "B"):
        partner = api.partner(f"Partner {name}", "supplier")
        contracts = [api.contract(partner["id"], title=f"{name} contract {i}") for i in (1, 2)]
        made[name] = Tenant(partner, contracts, identity_headers(kind="partner", partner_id=partner["id"],
                                                                  key_id=f"key-{name}"))
    api.change_terms(made["A"].contracts[0]["id"], 1, payment_terms_days=45)
    return made["A"], made["B"]


def _routes(contract_id: str) -> list[str]:
    return [f"{PORTAL}/me", f"{PORTAL}/contracts", f"{PORTAL}/contracts/{contract_id}",
            f"{PORTAL}/contracts/{contract_id}/terms"]


def test_me_is_the_calling_partner(client, tenants):
    a, b = tenants
    for tenant in (a, b):
        r = client.get(f"{PORTAL}/me", headers=tenant.headers)
        assert r.status_code == 200
        assert r.json == client.get(f"/api/v1/partners/{tenant.id}", headers=READ).json


def test_the_contract_list_holds_only_the_calling_partners_contracts(client, tenants):
    a, b = tenants
    for tenant in (a, b):
        r = client.get(f"{PORTAL}/contracts", headers=tenant.headers)
        assert r.status_code == 200
        assert {c["id"] for c in r.json["items"]} == tenant.contract_ids
        assert {c["partner_id"] for c in r.json["items"]} == {tenant.id}
    # Paging walks only A's contracts too.
    page1 = client.get(f"{PORTAL}/contracts?limit=1", headers=a.headers).json
    page2 = client.get(f"{PORTAL}/contracts?limit=1&cursor={page1['next_cursor']}", headers=a.headers).json
    assert {c["id"] for c in page1["items"] + page2["items"]} == a.contract_ids and page2["next_cursor"] is None


def test_a_partner_reads_its_own_contract_and_terms_history_without_internal_fields(client, tenants):
    a, _b = tenants
    cid = a.contracts[0]["id"]
    r = client.get(f"{PORTAL}/contracts/{cid}", headers=a.headers)
    assert r.status_code == 200 and r.headers["ETag"] == 'W/"2"'
    assert (r.json["id"], r.json["terms_version"], r.json["terms"]["payment_terms_days"]) == (cid, 2, 45)
    assert "changed_by" not in r.json["terms"]
    history = client.get(f"{PORTAL}/contracts/{cid}/terms", headers=a.headers)
    assert history.status_code == 200 and history.headers["ETag"] == 'W/"2"'
    assert [(v["version"], v["payment_terms_days"]) for v in history.json["items"]] == [(2, 45), (1, 30)]
    assert all("changed_by" not in v for v in history.json["items"])
    assert {k: history.json["items"][-1][k] for k in TERMS} == TERMS


def test_another_partners_contract_is_not_found_exactly_like_a_missing_one(client, tenants):
    a, b = tenants
    missing = str(uuid.uuid4())
    for reader, owner in ((a, b), (b, a)):
        for foreign in owner.contract_ids:
            for suffix in ("", "/terms"):
                r = client.get(f"{PORTAL}/contracts/{foreign}{suffix}", headers=reader.headers)
                assert r.status_code == 404, (reader.id, foreign, suffix)
                absent = client.get(f"{PORTAL}/contracts/{missing}{suffix}", headers=reader.headers)
                # Same status, title and wording: the response does not reveal that the contract exists.
                assert absent.status_code == 404
                assert r.json["title"] == absent.json["title"]
                assert r.json["detail"].replace(foreign, "<id>") == absent.json["detail"].replace(missing, "<id>")
                assert "ETag" not in r.headers and set(r.json) == set(absent.json)


def test_the_partner_id_comes_only_from_the_identity_token(client, tenants):
    a, b = tenants
    assert client.get(f"{PORTAL}/me?partner_id={b.id}", headers=a.headers).json["id"] == a.id
    r = client.get(f"{PORTAL}/contracts?partner_id={b.id}", headers=a.headers)
    assert {c["id"] for c in r.json["items"]} == a.contract_ids
    assert client.get(f"{PORTAL}/contracts/{b.contracts[0]['id']}?partner_id={b.id}", headers=a.headers).status_code == 404
    forged = {**a.headers, "X-CRM-Partner-ID": b.id, "X-Partner-Id": b.id}
    assert client.get(f"{PORTAL}/me", headers=forged).json["id"] == a.id


def test_internal_keys_are_refused_on_every_portal_route_even_with_admin(client, tenants):
    a, _b = tenants
    for path in _routes(a.contracts[0]["id"]):
        for headers in (RW, identity_headers("admin"), identity_headers("partners:*")):
            r = client.get(path, headers=headers)
            assert r.status_code == 403, path
            assert r.headers["Content-Type"].startswith("application/problem+json")


def test_every_portal_route_needs_an_identity(client, tenants):
    a, _b = tenants
    for path in _routes(a.contracts[0]["id"]):
        assert client.get(path).status_code == 401
        forged = identity_headers(kind="partner", partner_id=a.id, private_key=generate_keypair()[0])
        assert client.get(path, headers=forged).status_code == 401


def test_a_partner_key_cannot_reach_the_internal_partner_and_contract_routes(client, tenants, store):
    a, b = tenants
    own, foreign = a.contracts[0]["id"], b.contracts[0]["id"]
    calls = [("get", "/api/v1/partners", None), ("post", "/api/v1/partners", {"name": "X", "type": "vendor"}),
             ("get", f"/api/v1/partners/{a.id}", None), ("patch", f"/api/v1/partners/{a.id}", {"status": "active"}),
             ("get", f"/api/v1/partners/{a.id}/contracts", None),
             ("post", f"/api/v1/partners/{a.id}/contracts", {"title": "T", "terms": TERMS})]
    for cid in (own, foreign):
        calls += [("get", f"/api/v1/contracts/{cid}", None), ("get", f"/api/v1/contracts/{cid}/terms", None),
                  ("get", f"/api/v1/contracts/{cid}/terms/1", None), ("put", f"/api/v1/contracts/{cid}/terms", TERMS),
                  ("post", f"/api/v1/contracts/{cid}/terms", {"payment_terms_days": 90})]
    for method, path, body in calls:
        kwargs = {"json": body} if body is not None else {}
        r = getattr(client, method)(path, headers={**a.headers, "If-Match": "*"}, **kwargs)
        assert r.status_code == 403, (method, path, r.status_code)
    assert store.partners() == 2 and store.contracts() == 4 and store.terms_versions() == 5


def test_the_portal_is_read_only(client, tenants, store):
    a, _b = tenants
    cid = a.contracts[0]["id"]
    for method in ("post", "put", "patch", "delete"):
        for path in (f"{PORTAL}/contracts/{cid}", f"{PORTAL}/contracts/{cid}/terms", f"{PORTAL}/me"):
            r = getattr(client, method)(path, headers={**a.headers, "If-Match": "*"}, json={"payment_terms_days": 90})
            assert r.status_code == 405, (method, path)
    assert store.terms_versions() == 5


def test_a_key_for_an_unknown_partner_sees_nothing(client, tenants):
    """A partner that does not exist (or an id that is not one) is refused on every portal route (403)."""
    a, _b = tenants
    for stranger in (identity_headers(kind="partner", partner_id=str(uuid.uuid4())),
                     identity_headers(kind="partner", partner_id="acme")):
        for path in _routes(a.contracts[0]["id"]):
            response = client.get(path, headers=stranger)
            assert response.status_code == 403, path
            assert a.id not in response.get_data(as_text=True)