"""Negotiation on the real PostgreSQL: proposals, their decisions, the approval limit and expiry."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from crm.registry import SUITE
from services.common.settings import SettingsError
from services.partners import proposals
from services.partners.models import ContractTerms, Proposal
from tests.support.auth import identity_headers

from .conftest import READ, RW, Api, FreshIdentity

pytestmark = pytest.mark.integration

PORTAL = "/api/v1/partner-portal"
APPROVER = FreshIdentity("partners:read", "partners:write", "partners:approve")


def _if_match(headers, version: int) -> dict:
    return {**headers, "If-Match": f'W/"{version}"'}


@pytest.fixture
def deal(api):
    """A partner with one contract (terms version 1: net 30, 2.50 % discount) and the partner's portal headers."""
    partner = api.partner("Acme Supplies")
    contract = api.contract(partner["id"])
    headers = identity_headers(kind="partner", partner_id=partner["id"], key_id="key-acme")
    return partner, contract, headers


def _propose(client, contract_id: str, headers=RW, *, portal=False, **body) -> dict:
    prefix = PORTAL if portal else "/api/v1"
    body.setdefault("changes", {"payment_terms_days": 45})
    r = client.post(f"{prefix}/contracts/{contract_id}/proposals", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json


def _url(contract_id: str, proposal_id: str, action: str = "") -> str:
    return f"/api/v1/contracts/{contract_id}/proposals/{proposal_id}" + (f"/{action}" if action else "")


def test_an_internal_proposal_is_stored_open_with_the_default_expiry_and_announced(client, deal, store):
    _partner, contract, _headers = deal
    r = client.post(f"/api/v1/contracts/{contract['id']}/proposals", headers=RW,
                    json={"changes": {"payment_terms_days": 45, "discount_percent": "3.5"},
                          "message": "Net 45 for a larger discount?"})
    assert r.status_code == 201, r.text
    body = r.json
    assert r.headers["Location"] == _url(contract["id"], body["id"])
    assert (body["status"], body["proposed_by"], body["base_version"]) == ("open", "internal", 1)
    assert body["changes"] == {"payment_terms_days": 45, "discount_percent": "3.50"}
    assert body["proposed_by_key"] == "test-key" and body["terms_version"] is None
    created = datetime.fromisoformat(body["created_at"])
    assert datetime.fromisoformat(body["expires_at"]) - created == timedelta(days=14)
    (event,) = store.events("crm.proposal.submitted")
    assert event["data"]["proposal_id"] == body["id"] and event["data"]["changes"] == body["changes"]
    assert event["data"]["proposed_by"] == "internal" and event["data"]["base_version"] == 1
    assert client.get(_url(contract["id"], body["id"]), headers=READ).json == body


def test_expiry_may_be_given_as_a_moment_or_in_days_but_not_both_and_not_in_the_past(client, deal):
    _partner, contract, _headers = deal
    in_days = _propose(client, contract["id"], expires_in_days=3)
    assert (datetime.fromisoformat(in_days["expires_at"]) - datetime.fromisoformat(in_days["created_at"])
            == timedelta(days=3))
    path = f"/api/v1/contracts/{contract['id']}/proposals"
    both = client.post(path, headers=RW, json={"changes": {"payment_terms_days": 60}, "expires_in_days": 3,
                                               "expires_at": "2099-01-01T00:00:00Z"})
    past = client.post(path, headers=RW, json={"changes": {"payment_terms_days": 60},
                                               "expires_at": "2020-01-01T00:00:00Z"})
    assert (both.status_code, past.status_code) == (422, 422)
    assert "expires_at" in both.json["errors"] and "expires_at" in past.json["errors"]


@pytest.mark.parametrize("changes, field", [
    ({"payment_terms_days": -1}, "changes"),
    ({"colour": "blue"}, "changes"),
    ({}, "changes"),
    ({"payment_terms_days": 30}, "changes"),  # what is in force already: changes nothing
    ({"effective_to": "2025-06-30"}, "changes"),  # before effective_from in force
])
def test_changes_are_validated_like_a_terms_change_and_422_names_the_field(client, deal, store, changes, field):
    _partner, contract, _headers = deal
    r = client.post(f"/api/v1/contracts/{contract['id']}/proposals", headers=RW, json={"changes": changes})
    assert r.status_code == 422, r.text
    assert field in r.json["errors"]
    assert store.count(Proposal) == 0


def test_a_message_is_optional_but_a_missing_changes_object_is_422(client, deal):
    _partner, contract, _headers = deal
    r = client.post(f"/api/v1/contracts/{contract['id']}/proposals", headers=RW, json={"message": "hi"})
    assert r.status_code == 422 and "changes" in r.json["errors"]


def test_a_contract_has_at_most_one_open_proposal_and_the_409_names_it(client, deal, store):
    _partner, contract, _headers = deal
    first = _propose(client, contract["id"])
    again = client.post(f"/api/v1/contracts/{contract['id']}/proposals", headers=RW,
                        json={"changes": {"discount_percent": "5"}})
    assert again.status_code == 409
    assert again.json["open_proposal_id"] == first["id"]
    assert store.count(Proposal) == 1


def test_the_side_that_proposed_may_not_decide(client, deal):
    _partner, contract, headers = deal
    mine = _propose(client, contract["id"])
    accept = client.post(_url(contract["id"], mine["id"], "accept"), headers=_if_match(APPROVER, 1))
    reject = client.post(_url(contract["id"], mine["id"], "reject"), headers=RW, json={"reason": "no"})
    counter = client.post(_url(contract["id"], mine["id"], "counter"), headers=RW,
                          json={"changes": {"payment_terms_days": 40}})
    assert [r.status_code for r in (accept, reject, counter)] == [403, 403, 403]
    assert accept.json["proposed_by"] == "internal"
    assert client.get(_url(contract["id"], mine["id"]), headers=READ).json["status"] == "open"


def test_accepting_a_partner_proposal_makes_the_next_terms_version_through_the_terms_change(client, deal, store):
    _partner, contract, headers = deal
    offer = _propose(client, contract["id"], headers, portal=True, changes={"payment_terms_days": 45,
                                                                             "delivery_lead_time_days": 7})
    r = client.post(_url(contract["id"], offer["id"], "accept"), headers=_if_match(RW, 1))
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == 'W/"2"'
    assert (r.json["status"], r.json["terms_version"], r.json["decided_by_key"]) == ("accepted", 2, "test-key")
    now = client.get(f"/api/v1/contracts/{contract['id']}", headers=READ).json
    assert now["terms_version"] == 2
    assert (now["terms"]["payment_terms_days"], now["terms"]["delivery_lead_time_days"]) == (45, 7)
    assert now["terms"]["discount_percent"] == "2.50" and now["terms"]["changed_by"] == "test-key"
    (changed,) = store.events("crm.contract.terms_changed")
    assert changed["data"]["changed"] == ["payment_terms_days", "delivery_lead_time_days"]
    (accepted,) = store.events("crm.proposal.accepted")
    assert accepted["data"]["terms_version"] == 2 and accepted["data"]["proposed_by"] == "partner"
    again = client.post(_url(contract["id"], offer["id"], "accept"), headers=_if_match(RW, 2))
    assert again.status_code == 409 and again.json["proposal_status"] == "accepted"
    assert store.terms_versions() == 2


def test_accepting_needs_if_match_and_a_stale_one_is_412(client, deal, store):
    _partner, contract, headers = deal
    offer = _propose(client, contract["id"], headers, portal=True)
    missing = client.post(_url(contract["id"], offer["id"], "accept"), headers=RW)
    stale = client.post(_url(contract["id"], offer["id"], "accept"), headers=_if_match(RW, 7))
    assert (missing.status_code, stale.status_code) == (428, 412)
    assert client.get(_url(contract["id"], offer["id"]), headers=READ).json["status"] == "open"
    assert store.terms_versions() == 1


def test_a_proposal_against_an_older_version_cannot_be_accepted_and_the_409_gives_the_current_one(
        client, api, deal, store):
    _partner, contract, headers = deal
    offer = _propose(client, contract["id"], headers, portal=True)
    api.change_terms(contract["id"], 1, minimum_order_volume="500")
    r = client.post(_url(contract["id"], offer["id"], "accept"), headers=_if_match(RW, 2))
    assert r.status_code == 409
    assert (r.json["current_version"], r.json["base_version"]) == (2, 1)
    assert client.get(_url(contract["id"], offer["id"]), headers=READ).json["status"] == "open"
    assert store.terms_versions() == 2 and store.events("crm.proposal.accepted") == []


def test_internal_acceptance_above_the_approval_limit_needs_partners_approve(client, deal, store):
    _partner, contract, headers = deal
    offer = _propose(client, contract["id"], headers, portal=True,
                     changes={"payment_terms_days": 60, "discount_percent": "2.00"})  # +30 days, -0.50 points
    refused = client.post(_url(contract["id"], offer["id"], "accept"), headers=_if_match(RW, 1))
    assert refused.status_code == 403
    assert refused.json["required_scope"] == "partners:approve"
    assert refused.json["over_limit"] == ["payment_terms_days"]
    assert "partners:approve" in refused.json["detail"]
    wildcard = client.post(_url(contract["id"], offer["id"], "accept"),
                           headers=_if_match(FreshIdentity("partners:*"), 1))
    assert wildcard.status_code == 403, "partners:* does not grant the privileged scope"
    assert store.terms_versions() == 1
    approved = client.post(_url(contract["id"], offer["id"], "accept"), headers=_if_match(APPROVER, 1))
    assert approved.status_code == 200 and approved.json["terms_version"] == 2


def test_an_internal_proposal_or_counter_beyond_the_limit_needs_partners_approve_too(client, deal, store):
    """Else a change beyond the limits could be proposed internally, accepted by the partner, and never approved."""
    _partner, contract, headers = deal
    body = {"changes": {"payment_terms_days": 90}}
    refused = client.post(f"/api/v1/contracts/{contract['id']}/proposals", json=body, headers=RW)
    assert refused.status_code == 403 and refused.json["over_limit"] == ["payment_terms_days"]
    assert client.get(f"/api/v1/contracts/{contract['id']}/proposals", headers=RW).json["items"] == []
    theirs = _propose(client, contract["id"], headers, portal=True, changes={"payment_terms_days": 40})
    countered = client.post(_url(contract["id"], theirs["id"], "counter"), json=body, headers=RW)
    assert countered.status_code == 403 and countered.json["required_scope"] == "partners:approve"
    assert client.get(_url(contract["id"], theirs["id"]), headers=RW).json["status"] == "open", "nothing changed"
    approved = client.post(_url(contract["id"], theirs["id"], "counter"), json=body, headers=APPROVER)
    assert approved.status_code == 201, approved.text
    accepted = client.post(_url(approved.json["contract_id"], approved.json["id"], "accept").replace(
        "/api/v1/", f"{PORTAL}/"), headers=_if_match(headers, 1))
    assert accepted.status_code == 200 and accepted.json["terms_version"] == 2


def test_a_change_at_the_limit_needs_no_approval_and_a_discount_beyond_it_does(client, api, deal):
    partner, contract, headers = deal
    at_limit = _propose(client, contract["id"], headers, portal=True,
                        changes={"payment_terms_days": 45, "discount_percent": "4.50"})  # +15 days, +2 points
    assert client.post(_url(contract["id"], at_limit["id"], "accept"), headers=_if_match(RW, 1)).status_code == 200
    beyond = _propose(client, contract["id"], headers, portal=True, changes={"discount_percent": "0.49"})
    r = client.post(_url(contract["id"], beyond["id"], "accept"), headers=_if_match(RW, 2))
    assert r.status_code == 403 and r.json["over_limit"] == ["discount_percent"]


def test_the_approval_limits_come_from_the_settings(service_app):
    app = service_app("partners", CRM_PARTNERS_APPROVAL_LIMITS='{"delivery_lead_time_days": 3}')
    client = app.test_client()
    partner = Api(client).partner("Lean", "vendor")
    contract = Api(client).contract(partner["id"])
    headers = identity_headers(kind="partner", partner_id=partner["id"], key_id="key-lean")
    big_terms = _propose(client, contract["id"], headers, portal=True, changes={"payment_terms_days": 90})
    assert client.post(_url(contract["id"], big_terms["id"], "accept"),
                       headers=_if_match(RW, 1)).status_code == 200, "payment terms have no limit now"
    faster = _propose(client, contract["id"], headers, portal=True, changes={"delivery_lead_time_days": 10})
    r = client.post(_url(contract["id"], faster["id"], "accept"), headers=_if_match(RW, 2))
    assert r.status_code == 403 and r.json["over_limit"] == ["delivery_lead_time_days"]


@pytest.mark.parametrize("raw", ['{"payment_terms_days": -1}', '{"currency": 1}', "[15]", "not json",
                                 '{"discount_percent": true}'])
def test_malformed_approval_limits_stop_start_up_naming_the_variable(make_settings, raw):
    settings = make_settings("partners", "postgresql://unused/none", CRM_PARTNERS_APPROVAL_LIMITS=raw)
    with pytest.raises(SettingsError) as caught:
        SUITE.create_app("partners", settings)
    assert caught.value.variable == "CRM_PARTNERS_APPROVAL_LIMITS"


def test_rejecting_needs_a_reason_and_closes_the_proposal(client, deal, store):
    _partner, contract, headers = deal
    offer = _propose(client, contract["id"], headers, portal=True)
    no_reason = client.post(_url(contract["id"], offer["id"], "reject"), headers=RW, json={})
    blank = client.post(_url(contract["id"], offer["id"], "reject"), headers=RW, json={"reason": "  "})
    assert (no_reason.status_code, blank.status_code) == (422, 422) and "reason" in no_reason.json["errors"]
    r = client.post(_url(contract["id"], offer["id"], "reject"), headers=RW, json={"reason": "Too long for us"})
    assert r.status_code == 200
    assert (r.json["status"], r.json["reason"], r.json["decided_by_key"]) == ("rejected", "Too long for us", "test-key")
    (event,) = store.events("crm.proposal.rejected")
    assert event["data"]["reason"] == "Too long for us"
    late = client.post(_url(contract["id"], offer["id"], "accept"), headers=_if_match(APPROVER, 1))
    assert late.status_code == 409 and late.json["proposal_status"] == "rejected"
    # The slot is free again.
    assert _propose(client, contract["id"])["status"] == "open"


def test_countering_supersedes_the_proposal_and_the_thread_reads_newest_first(client, deal, store):
    _partner, contract, headers = deal
    offer = _propose(client, contract["id"], headers, portal=True, changes={"payment_terms_days": 60})
    r = client.post(_url(contract["id"], offer["id"], "counter"), headers=RW,
                    json={"changes": {"payment_terms_days": 45}, "message": "Meet halfway?"})
    assert r.status_code == 201, r.text
    counter = r.json
    assert (counter["status"], counter["proposed_by"], counter["supersedes_id"]) == ("open", "internal", offer["id"])
    assert r.headers["Location"] == _url(contract["id"], counter["id"])
    old = client.get(_url(contract["id"], offer["id"]), headers=READ).json
    assert (old["status"], old["decided_by_key"]) == ("countered", "test-key")
    (countered,) = store.events("crm.proposal.countered")
    assert countered["data"]["proposal_id"] == offer["id"]
    assert countered["data"]["counter_proposal_id"] == counter["id"]
    assert [e["data"]["proposal_id"] for e in store.events("crm.proposal.submitted")] == [offer["id"], counter["id"]]
    thread = client.get(f"/api/v1/contracts/{contract['id']}/proposals", headers=READ).json
    assert [p["id"] for p in thread["items"]] == [counter["id"], offer["id"]] and thread["next_cursor"] is None
    page1 = client.get(f"/api/v1/contracts/{contract['id']}/proposals?limit=1", headers=READ).json
    page2 = client.get(f"/api/v1/contracts/{contract['id']}/proposals?limit=1&cursor={page1['next_cursor']}",
                       headers=READ).json
    assert [p["id"] for p in page1["items"] + page2["items"]] == [counter["id"], offer["id"]]
    assert page2["next_cursor"] is None
    # The countered proposal cannot be decided any more; the counter is the partner's to decide.
    assert client.post(_url(contract["id"], offer["id"], "accept"), headers=_if_match(RW, 1)).status_code == 409
    assert client.post(_url(contract["id"], counter["id"], "accept"), headers=_if_match(RW, 1)).status_code == 403


def test_a_proposal_is_found_only_under_its_own_contract(client, api, deal):
    partner, contract, headers = deal
    other = api.contract(partner["id"], title="Second")
    offer = _propose(client, contract["id"])
    assert client.get(_url(other["id"], offer["id"]), headers=READ).status_code == 404
    missing = "00000000-0000-4000-8000-000000000000"
    assert client.get(f"/api/v1/contracts/{missing}/proposals", headers=READ).status_code == 404
    assert client.post(f"/api/v1/contracts/{missing}/proposals", headers=RW,
                       json={"changes": {"payment_terms_days": 45}}).status_code == 404


def test_scopes_reads_need_partners_read_and_writes_partners_write(client, deal):
    _partner, contract, _headers = deal
    path = f"/api/v1/contracts/{contract['id']}/proposals"
    assert client.post(path, headers=READ, json={"changes": {"payment_terms_days": 45}}).status_code == 403
    assert client.get(path, headers=FreshIdentity("partners:write")).status_code == 403
    receipt = client.post(path, headers=FreshIdentity("partners:write"), json={"changes": {"payment_terms_days": 45}})
    assert receipt.status_code == 201 and set(receipt.json) == {"id", "status"}


def test_a_retry_with_the_same_idempotency_key_creates_one_proposal(client, deal, store):
    _partner, contract, _headers = deal
    path = f"/api/v1/contracts/{contract['id']}/proposals"
    headers = {**RW, "Idempotency-Key": "proposal-1"}
    first = client.post(path, headers=headers, json={"changes": {"payment_terms_days": 45}})
    again = client.post(path, headers=headers, json={"changes": {"payment_terms_days": 45}})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json == first.json and again.headers.get("Idempotent-Replayed") == "true"
    assert store.count(Proposal) == 1 and len(store.events("crm.proposal.submitted")) == 1


def test_a_terminated_partners_contract_takes_no_proposal(client, deal):
    partner, contract, _headers = deal
    assert client.patch(f"/api/v1/partners/{partner['id']}", headers=RW,
                        json={"status": "terminated"}).status_code == 200
    r = client.post(f"/api/v1/contracts/{contract['id']}/proposals", headers=RW,
                    json={"changes": {"payment_terms_days": 45}})
    assert r.status_code == 409


# -- expiry ------------------------------------------------------------------------------------------------

def _backdate(runtime, proposal_id: str, *, days: int = 1) -> None:
    """Move a proposal's expiry into the past, as the calendar would."""
    with runtime.session_factory() as s:
        s.execute(update(Proposal).where(Proposal.id == proposal_id)
                  .values(expires_at=datetime.now(timezone.utc) - timedelta(days=days)))
        s.commit()


def test_a_read_shows_an_expired_proposal_as_expired_and_it_cannot_be_decided(app, client, deal, store):
    _partner, contract, headers = deal
    offer = _propose(client, contract["id"], headers, portal=True)
    _backdate(app.extensions["crm.runtime"], offer["id"])
    assert client.get(_url(contract["id"], offer["id"]), headers=READ).json["status"] == "expired"
    listed = client.get(f"/api/v1/contracts/{contract['id']}/proposals", headers=READ).json["items"]
    assert [p["status"] for p in listed] == ["expired"]
    r = client.post(_url(contract["id"], offer["id"], "accept"), headers=_if_match(APPROVER, 1))
    assert r.status_code == 409 and r.json["proposal_status"] == "expired"
    assert store.terms_versions() == 1


def test_a_new_proposal_closes_an_expired_one_and_announces_it_once(app, client, deal, store):
    _partner, contract, headers = deal
    offer = _propose(client, contract["id"], headers, portal=True)
    _backdate(app.extensions["crm.runtime"], offer["id"])
    fresh = _propose(client, contract["id"], changes={"discount_percent": "3"})
    assert fresh["status"] == "open"
    (expired,) = store.events("crm.proposal.expired")
    assert expired["data"]["proposal_id"] == offer["id"]
    assert proposals.expire_due(app.extensions["crm.runtime"]) == 0
    assert len(store.events("crm.proposal.expired")) == 1


def test_the_expiry_job_closes_due_proposals_once_with_two_workers_at_once(app, api, client, store,
                                                                           partners_settings):
    runtime = app.extensions["crm.runtime"]
    partner = api.partner("Many contracts")
    due, kept = [], None
    for i in range(6):
        contract = api.contract(partner["id"], title=f"Contract {i}")
        offer = _propose(client, contract["id"])
        if i < 5:
            _backdate(runtime, offer["id"])
            due.append(offer["id"])
        else:
            kept = offer["id"]
    # Two worker processes' runtimes on the same database, released together.
    runtimes = [SUITE.create_worker("partners", partners_settings).runtime for _ in range(2)]
    barrier, closed = threading.Barrier(2), []

    def work(rt):
        barrier.wait()
        closed.append(proposals.expire_due(rt, batch=2))

    threads = [threading.Thread(target=work, args=(rt,)) for rt in runtimes]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        for rt in runtimes:
            rt.engine.dispose()
    assert sum(closed) == 5
    assert sorted(e["data"]["proposal_id"] for e in store.events("crm.proposal.expired")) == sorted(due)
    with runtime.session_factory() as s:
        statuses = dict(s.execute(select(Proposal.id, Proposal.status)).all())
    assert {str(k): v for k, v in statuses.items()} == {**{pid: "expired" for pid in due}, kept: "open"}


def test_the_partners_worker_runs_the_expiry_job(partners_settings):
    worker = SUITE.create_worker("partners", partners_settings)
    try:
        assert "proposal_expiry" in worker.jobs
    finally:
        worker.runtime.engine.dispose()


def test_accepting_writes_the_terms_row_with_the_accepting_key(app, client, deal):
    _partner, contract, headers = deal
    offer = _propose(client, contract["id"], headers, portal=True)
    client.post(_url(contract["id"], offer["id"], "accept"), headers=_if_match(RW, 1))
    with app.extensions["crm.runtime"].session_factory() as s:
        row = s.scalar(select(ContractTerms).where(ContractTerms.contract_id == contract["id"],
                                                   ContractTerms.version == 2))
    assert row.payment_terms_days == 45 and row.changed_by == "test-key"
