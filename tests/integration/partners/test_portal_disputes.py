"""Disputes in the partner portal on the real PostgreSQL: each partner sees and acts only on its own (OWASP API1)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import update

from services.common.db import utcnow
from services.partners.models import Dispute, DisputeMessage
from tests.support.auth import identity_headers

from .conftest import READ, RW, FreshIdentity

pytestmark = pytest.mark.integration

PORTAL = "/api/v1/partner-portal"
DISPUTES = f"{PORTAL}/disputes"
ADMIN = FreshIdentity("admin")


@dataclass
class Tenant:
    partner: dict
    contract: dict
    headers: dict

    @property
    def id(self) -> str:
        return self.partner["id"]


def _body(**fields) -> dict:
    return {"category": "delay", "amount": "300.00", "currency": "EUR", "message": "Order 17 is two weeks late.",
            **fields}


@pytest.fixture
def tenants(api):
    """Partners A and B, each with one contract and a partner key of its own."""
    made = []
    for name in ("A", "B"):
        partner = api.partner(f"Partner {name}")
        made.append(Tenant(partner, api.contract(partner["id"]),
                           identity_headers(kind="partner", partner_id=partner["id"], key_id=f"key-{name}")))
    return tuple(made)


def _open(client, tenant: Tenant, **fields) -> dict:
    r = client.post(DISPUTES, headers=tenant.headers, json=_body(contract_id=tenant.contract["id"], **fields))
    assert r.status_code == 201, r.text
    return r.json


def _internal(tenant: Tenant, dispute_id: str = "") -> str:
    return f"/api/v1/partners/{tenant.id}/disputes" + (f"/{dispute_id}" if dispute_id else "")


def _routes(dispute_id: str) -> list[tuple[str, str, dict | None]]:
    """Every portal dispute route as (method, path, body)."""
    return [("GET", DISPUTES, None), ("POST", DISPUTES, _body(invoice_reference="INV-1")),
            ("GET", f"{DISPUTES}/{dispute_id}", None), ("POST", f"{DISPUTES}/{dispute_id}/escalation", None),
            ("GET", f"{DISPUTES}/{dispute_id}/messages", None),
            ("POST", f"{DISPUTES}/{dispute_id}/messages", {"body": "hello"})]


def _call(client, method: str, path: str, headers, body):
    return client.open(path, method=method, headers=headers, json=body)


# -- the partner's own disputes -----------------------------------------------------------------------------

def test_a_partner_opens_a_dispute_about_its_contract_and_we_see_it(client, tenants, store):
    a, _b = tenants
    r = client.post(DISPUTES, headers=a.headers, json=_body(contract_id=a.contract["id"]))
    assert r.status_code == 201, r.text
    d = r.json
    assert (d["partner_id"], d["contract_id"], d["opened_by"], d["status"], d["amount"]) == (
        a.id, a.contract["id"], "partner", "open", "300.00")
    assert "opened_by_key" not in d and r.headers["Location"] == f"{DISPUTES}/{d['id']}"
    internal = client.get(_internal(a, d["id"]), headers=READ).json
    assert internal["opened_by_key"] == "key-A"
    assert {k: v for k, v in internal.items() if k != "opened_by_key"} == d
    (event,) = store.events("crm.dispute.opened")
    assert (event["data"]["opened_by"], event["data"]["contract_id"]) == ("partner", a.contract["id"])


def test_a_partner_cannot_open_a_dispute_about_another_partners_contract(client, tenants, store):
    a, b = tenants
    r = client.post(DISPUTES, headers=a.headers, json=_body(contract_id=b.contract["id"]))
    unknown = client.post(DISPUTES, headers=a.headers, json=_body(contract_id=str(uuid.uuid4())))
    assert r.status_code == unknown.status_code == 422
    assert r.json["errors"] == unknown.json["errors"] == {"contract_id": ["No contract of this partner has this id."]}
    assert store.count(Dispute) == 0


def test_both_sides_write_in_the_thread_and_each_sees_the_whole_thread(client, tenants):
    a, _b = tenants
    d = _open(client, a)
    r = client.post(f"{_internal(a, d['id'])}/messages", headers=RW, json={"body": "Which pallets?"})
    assert r.status_code == 201
    r = client.post(f"{DISPUTES}/{d['id']}/messages", headers=a.headers, json={"body": "Pallets 3 to 7."})
    assert r.status_code == 201 and r.json["side"] == "partner" and "author_key" not in r.json
    portal = client.get(f"{DISPUTES}/{d['id']}/messages", headers=a.headers).json["items"]
    assert [(m["side"], m["body"]) for m in portal] == [
        ("partner", "Order 17 is two weeks late."), ("internal", "Which pallets?"), ("partner", "Pallets 3 to 7.")]
    assert all("author_key" not in m for m in portal)
    internal = client.get(f"{_internal(a, d['id'])}/messages", headers=READ).json["items"]
    assert [m["author_key"] for m in internal] == ["key-A", "test-key", "key-A"]


def test_a_partner_escalates_its_dispute_but_moves_it_no_other_way(client, tenants, store):
    a, _b = tenants
    d = _open(client, a)
    r = client.post(f"{DISPUTES}/{d['id']}/escalation", headers={**a.headers, "If-Match": 'W/"7"'})
    assert r.status_code == 412
    r = client.post(f"{DISPUTES}/{d['id']}/escalation", headers=a.headers)
    assert r.status_code == 200 and (r.json["status"], r.json["version"]) == ("escalated", 2)
    assert r.headers["ETag"] == 'W/"2"'
    r = client.post(f"{DISPUTES}/{d['id']}/escalation", headers=a.headers)
    assert r.status_code == 409 and r.json["current_status"] == "escalated"
    (event,) = store.events("crm.dispute.updated")
    assert event["data"]["status"] == "escalated"
    # Only internal users resolve it; the portal has no route that moves a dispute any other way.
    assert client.patch(_internal(a, d["id"]), headers=a.headers, json={"status": "resolved"}).status_code == 403


def test_a_partner_lists_only_its_own_disputes_by_status_and_overdue(client, app, tenants):
    a, b = tenants
    mine = [_open(client, a) for _ in range(3)]
    _open(client, b)
    with app.extensions["crm.runtime"].session_factory() as s:
        s.execute(update(Dispute).where(Dispute.id == uuid.UUID(mine[0]["id"]))
                  .values(opened_at=utcnow() - timedelta(hours=200), updated_at=Dispute.updated_at))
        s.commit()
    client.post(f"{DISPUTES}/{mine[1]['id']}/escalation", headers=a.headers)

    def ids(query: str = "", tenant: Tenant = a) -> list[str]:
        r = client.get(f"{DISPUTES}?{query}", headers=tenant.headers)
        assert r.status_code == 200, r.text
        assert all("opened_by_key" not in d for d in r.json["items"])
        return [d["id"] for d in r.json["items"]]

    assert ids() == [d["id"] for d in reversed(mine)]
    assert ids("status=escalated") == [mine[1]["id"]]
    assert ids("overdue=true") == [mine[0]["id"]]
    page1 = client.get(f"{DISPUTES}?limit=2", headers=a.headers).json
    page2 = client.get(f"{DISPUTES}?limit=2&cursor={page1['next_cursor']}", headers=a.headers).json
    assert [d["id"] for d in page1["items"] + page2["items"]] == ids() and page2["next_cursor"] is None
    assert len(ids(tenant=b)) == 1 and ids(tenant=b)[0] not in ids()


# -- isolation ----------------------------------------------------------------------------------------------

def test_another_partners_dispute_is_not_found_exactly_like_a_missing_one_on_every_route(client, tenants, store):
    a, b = tenants
    foreign = _open(client, b)["id"]
    missing = str(uuid.uuid4())
    for method, path, body in _routes(foreign)[2:]:
        r = _call(client, method, path, a.headers, body)
        absent = _call(client, method, path.replace(foreign, missing), a.headers, body)
        assert r.status_code == absent.status_code == 404, (method, path, r.status_code)
        assert r.json["title"] == absent.json["title"]
        assert r.json["detail"].replace(foreign, "<id>") == absent.json["detail"].replace(missing, "<id>")
    got = client.get(_internal(b, foreign), headers=READ).json
    assert (got["status"], got["version"]) == ("open", 1)
    assert store.count(DisputeMessage) == 1 and store.events("crm.dispute.updated") == []


def test_internal_keys_are_refused_on_every_portal_dispute_route_even_with_admin(client, tenants):
    a, _b = tenants
    d = _open(client, a)
    for headers in (RW, ADMIN):
        for method, path, body in _routes(d["id"]):
            r = _call(client, method, path, headers, body)
            assert r.status_code == 403, (method, path, r.status_code)


def test_a_partner_key_cannot_reach_the_internal_dispute_routes(client, tenants):
    a, _b = tenants
    d = _open(client, a)
    for method, path, body in [("GET", _internal(a), None), ("POST", _internal(a), _body(invoice_reference="X")),
                               ("GET", _internal(a, d["id"]), None),
                               ("PATCH", _internal(a, d["id"]), {"status": "investigating"}),
                               ("GET", f"{_internal(a, d['id'])}/messages", None),
                               ("POST", f"{_internal(a, d['id'])}/messages", {"body": "hi"})]:
        assert _call(client, method, path, a.headers, body).status_code == 403, (method, path)


@pytest.mark.parametrize("status", ["suspended", "terminated"])
def test_a_suspended_or_terminated_partner_is_refused_on_every_portal_dispute_route(client, tenants, store, status):
    a, b = tenants
    d = _open(client, a)
    moves = {"suspended": ["onboarding", "active", "suspended"], "terminated": ["terminated"]}[status]
    for target in moves:
        assert client.patch(f"/api/v1/partners/{a.id}", headers=RW, json={"status": target}).status_code == 200
    for method, path, body in _routes(d["id"]):
        r = _call(client, method, path, a.headers, body)
        assert r.status_code == 403 and r.json["partner_status"] == status, (method, path)
    assert store.count(Dispute) == 1 and store.count(DisputeMessage) == 1
    # B is untouched by A's suspension.
    assert client.get(DISPUTES, headers=b.headers).status_code == 200
