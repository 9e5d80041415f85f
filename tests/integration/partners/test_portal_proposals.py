"""Negotiation in the partner portal on the real PostgreSQL: each partner negotiates only its own contracts."""
from __future__ import annotations

import pytest

from tests.support.auth import identity_headers

from .conftest import READ, RW, FreshIdentity

pytestmark = pytest.mark.integration

PORTAL = "/api/v1/partner-portal"
APPROVER = FreshIdentity("partners:read", "partners:write", "partners:approve")


def _if_match(headers, version: int) -> dict:
    return {**headers, "If-Match": f'W/"{version}"'}


@pytest.fixture
def two_partners(api):
    """Partners A and B, one contract each (terms version 1, net 30, lead time 14 days), and their portal headers."""
    made = []
    for name in ("A", "B"):
        partner = api.partner(f"Partner {name}", "supplier")
        contract = api.contract(partner["id"], title=f"{name} contract")
        made.append((partner, contract,
                     identity_headers(kind="partner", partner_id=partner["id"], key_id=f"key-{name}")))
    return made


def _portal(contract_id: str, proposal_id: str | None = None, action: str = "") -> str:
    path = f"{PORTAL}/contracts/{contract_id}/proposals"
    if proposal_id:
        path += f"/{proposal_id}"
    return path + (f"/{action}" if action else "")


def _internal(contract_id: str, proposal_id: str | None = None, action: str = "") -> str:
    return _portal(contract_id, proposal_id, action).replace(PORTAL, "/api/v1")


def test_a_partner_proposes_on_its_own_contract_and_sees_no_internal_fields(client, two_partners, store):
    (a, a_contract, a_headers), _b = two_partners
    r = client.post(_portal(a_contract["id"]), headers=a_headers,
                    json={"changes": {"payment_terms_days": 45}, "message": "Net 45, please"})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == _portal(a_contract["id"], r.json["id"])
    assert (r.json["proposed_by"], r.json["partner_id"], r.json["status"]) == ("partner", a["id"], "open")
    assert "proposed_by_key" not in r.json and "decided_by_key" not in r.json
    (event,) = store.events("crm.proposal.submitted")
    assert event["data"]["proposed_by"] == "partner" and event["data"]["partner_id"] == a["id"]
    # The internal side sees it, with the key that made it.
    seen = client.get(_internal(a_contract["id"], r.json["id"]), headers=READ).json
    assert seen["proposed_by_key"] == "key-A"
    assert client.get(_portal(a_contract["id"], r.json["id"]), headers=a_headers).json == r.json


def test_another_partners_contract_and_proposals_are_not_found_on_every_route(client, two_partners, store):
    (_a, a_contract, a_headers), (_b, b_contract, b_headers) = two_partners
    b_offer = client.post(_portal(b_contract["id"]), headers=b_headers,
                          json={"changes": {"payment_terms_days": 60}}).json
    a_offer = client.post(_internal(a_contract["id"]), headers=RW,
                          json={"changes": {"payment_terms_days": 20}}).json
    cid, pid = b_contract["id"], b_offer["id"]
    attempts = [
        client.get(_portal(cid), headers=a_headers),
        client.post(_portal(cid), headers=a_headers, json={"changes": {"payment_terms_days": 10}}),
        client.get(_portal(cid, pid), headers=a_headers),
        client.post(_portal(cid, pid, "accept"), headers=_if_match(a_headers, 1)),
        client.post(_portal(cid, pid, "reject"), headers=a_headers, json={"reason": "no"}),
        client.post(_portal(cid, pid, "counter"), headers=a_headers, json={"changes": {"payment_terms_days": 10}}),
        # B's proposal id under A's own contract is not found either.
        client.get(_portal(a_contract["id"], pid), headers=a_headers),
        client.post(_portal(a_contract["id"], pid, "reject"), headers=a_headers, json={"reason": "no"}),
        # And B cannot reach A's proposal.
        client.get(_portal(a_contract["id"], a_offer["id"]), headers=b_headers),
        client.post(_portal(a_contract["id"], a_offer["id"], "accept"), headers=_if_match(b_headers, 1)),
    ]
    assert [r.status_code for r in attempts] == [404] * len(attempts)
    assert {r.json["title"] for r in attempts} == {"Not found"}
    statuses = {p["id"]: p["status"] for c in (a_contract, b_contract)
                for p in client.get(_internal(c["id"]), headers=READ).json["items"]}
    assert statuses == {b_offer["id"]: "open", a_offer["id"]: "open"}
    assert len(store.events("crm.proposal.submitted")) == 2


def test_an_internal_key_is_refused_on_the_portal_routes(client, two_partners):
    (_a, a_contract, a_headers), _b = two_partners
    offer = client.post(_portal(a_contract["id"]), headers=a_headers,
                        json={"changes": {"payment_terms_days": 45}}).json
    cid, pid = a_contract["id"], offer["id"]
    attempts = [
        client.get(_portal(cid), headers=RW),
        client.post(_portal(cid), headers=RW, json={"changes": {"payment_terms_days": 50}}),
        client.get(_portal(cid, pid), headers=RW),
        client.post(_portal(cid, pid, "accept"), headers=_if_match(RW, 1)),
        client.post(_portal(cid, pid, "reject"), headers=RW, json={"reason": "no"}),
        client.post(_portal(cid, pid, "counter"), headers=RW, json={"changes": {"payment_terms_days": 50}}),
    ]
    assert [r.status_code for r in attempts] == [403] * len(attempts)


def test_partner_keys_are_refused_on_the_internal_routes(client, two_partners):
    (_a, a_contract, a_headers), _b = two_partners
    assert client.get(_internal(a_contract["id"]), headers=a_headers).status_code == 403
    assert client.post(_internal(a_contract["id"]), headers=a_headers,
                       json={"changes": {"payment_terms_days": 45}}).status_code == 403


def test_a_suspended_partner_cannot_negotiate_and_the_other_partner_can(client, two_partners):
    (a, a_contract, a_headers), (_b, b_contract, b_headers) = two_partners
    offer = client.post(_internal(a_contract["id"]), headers=RW, json={"changes": {"payment_terms_days": 45}}).json
    for status in ("onboarding", "active", "suspended"):
        assert client.patch(f"/api/v1/partners/{a['id']}", headers=RW, json={"status": status}).status_code == 200
    cid, pid = a_contract["id"], offer["id"]
    attempts = [
        client.get(_portal(cid), headers=a_headers),
        client.post(_portal(cid), headers=a_headers, json={"changes": {"payment_terms_days": 50}}),
        client.get(_portal(cid, pid), headers=a_headers),
        client.post(_portal(cid, pid, "accept"), headers=_if_match(a_headers, 1)),
        client.post(_portal(cid, pid, "reject"), headers=a_headers, json={"reason": "no"}),
        client.post(_portal(cid, pid, "counter"), headers=a_headers, json={"changes": {"payment_terms_days": 50}}),
    ]
    assert [r.status_code for r in attempts] == [403] * len(attempts)
    assert {r.json["partner_status"] for r in attempts} == {"suspended"}
    assert client.get(_internal(cid, pid), headers=READ).json["status"] == "open"
    assert client.post(_portal(b_contract["id"]), headers=b_headers,
                       json={"changes": {"payment_terms_days": 50}}).status_code == 201


def test_the_partner_accepts_an_internal_proposal_without_any_approval(client, two_partners, store):
    (_a, a_contract, a_headers), _b = two_partners
    # Far beyond the internal approval limits: the internal side committed to it by proposing (with the scope).
    offer = client.post(_internal(a_contract["id"]), headers=APPROVER,
                        json={"changes": {"payment_terms_days": 90, "discount_percent": "10"}}).json
    own = client.post(_portal(a_contract["id"]), headers=a_headers, json={"changes": {"payment_terms_days": 60}})
    assert own.status_code == 409 and own.json["open_proposal_id"] == offer["id"]
    missing = client.post(_portal(a_contract["id"], offer["id"], "accept"), headers=a_headers)
    assert missing.status_code == 428
    r = client.post(_portal(a_contract["id"], offer["id"], "accept"), headers=_if_match(a_headers, 1))
    assert r.status_code == 200, r.text
    assert (r.json["status"], r.json["terms_version"], r.headers["ETag"]) == ("accepted", 2, 'W/"2"')
    contract = client.get(f"{PORTAL}/contracts/{a_contract['id']}", headers=a_headers).json
    assert (contract["terms_version"], contract["terms"]["payment_terms_days"],
            contract["terms"]["discount_percent"]) == (2, 90, "10.00")
    internal = client.get(_internal(a_contract["id"], offer["id"]), headers=READ).json
    assert internal["decided_by_key"] == "key-A"
    assert [e["data"]["version"] for e in store.events("crm.contract.terms_changed")] == [2]


def test_a_partner_may_not_decide_its_own_proposal(client, two_partners):
    (_a, a_contract, a_headers), _b = two_partners
    offer = client.post(_portal(a_contract["id"]), headers=a_headers,
                        json={"changes": {"payment_terms_days": 45}}).json
    attempts = [
        client.post(_portal(a_contract["id"], offer["id"], "accept"), headers=_if_match(a_headers, 1)),
        client.post(_portal(a_contract["id"], offer["id"], "reject"), headers=a_headers, json={"reason": "oops"}),
        client.post(_portal(a_contract["id"], offer["id"], "counter"), headers=a_headers,
                    json={"changes": {"payment_terms_days": 40}}),
    ]
    assert [r.status_code for r in attempts] == [403, 403, 403]


def test_a_partner_rejects_with_a_reason_and_reads_the_thread(client, two_partners, store):
    (_a, a_contract, a_headers), _b = two_partners
    offer = client.post(_internal(a_contract["id"]), headers=RW, json={"changes": {"payment_terms_days": 15}}).json
    assert client.post(_portal(a_contract["id"], offer["id"], "reject"), headers=a_headers,
                       json={}).status_code == 422
    r = client.post(_portal(a_contract["id"], offer["id"], "reject"), headers=a_headers,
                    json={"reason": "Our cash flow needs net 30"})
    assert r.status_code == 200 and (r.json["status"], r.json["reason"]) == ("rejected", "Our cash flow needs net 30")
    (event,) = store.events("crm.proposal.rejected")
    assert event["data"]["reason"] == "Our cash flow needs net 30" and event["data"]["proposed_by"] == "internal"
    thread = client.get(_portal(a_contract["id"]), headers=a_headers).json
    assert [(p["id"], p["status"]) for p in thread["items"]] == [(offer["id"], "rejected")]
    assert all("decided_by_key" not in p for p in thread["items"])


def test_a_partner_counter_proposes_net_45_for_a_shorter_lead_time_and_the_buyer_accepts(client, two_partners,
                                                                                         store):
    (_a, a_contract, a_headers), _b = two_partners
    cid = a_contract["id"]
    ask = client.post(_internal(cid), headers=RW, json={"changes": {"delivery_lead_time_days": 7},
                                                        "message": "We need deliveries within a week."}).json
    counter = client.post(_portal(cid, ask["id"], "counter"), headers={**a_headers, "Idempotency-Key": "c-1"},
                          json={"changes": {"delivery_lead_time_days": 7, "payment_terms_days": 45},
                                "message": "A week's lead time for net 45."})
    assert counter.status_code == 201, counter.text
    replay = client.post(_portal(cid, ask["id"], "counter"), headers={**a_headers, "Idempotency-Key": "c-1"},
                         json={"changes": {"delivery_lead_time_days": 7, "payment_terms_days": 45},
                               "message": "A week's lead time for net 45."})
    assert replay.status_code == 201 and replay.json == counter.json
    body = counter.json
    assert (body["supersedes_id"], body["proposed_by"]) == (ask["id"], "partner")
    assert body["changes"] == {"payment_terms_days": 45, "delivery_lead_time_days": 7}
    assert client.get(_portal(cid, ask["id"]), headers=a_headers).json["status"] == "countered"
    accepted = client.post(_internal(cid, body["id"], "accept"), headers=_if_match(RW, 1))
    assert accepted.status_code == 200 and accepted.json["terms_version"] == 2
    terms = client.get(f"{PORTAL}/contracts/{cid}", headers=a_headers).json
    assert (terms["terms_version"], terms["terms"]["payment_terms_days"],
            terms["terms"]["delivery_lead_time_days"]) == (2, 45, 7)
    thread = client.get(_portal(cid), headers=a_headers).json["items"]
    assert [(p["id"], p["status"]) for p in thread] == [(body["id"], "accepted"), (ask["id"], "countered")]
    assert [e["type"] for e in store.events() if e["type"].startswith("crm.proposal.")] == [
        "crm.proposal.submitted", "crm.proposal.countered", "crm.proposal.submitted", "crm.proposal.accepted"]
