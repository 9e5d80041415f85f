"""Termination policies for partners on PostgreSQL: a simulation that changes nothing, a dispute event that
recommends ending a relationship, and accepting it: the partner is terminated and its portal key refused."""
from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from services.common.catalog import make_event
from services.partners import handlers, termination
from services.partners.models import Dispute, OutboxMessage, Partner, Termination
from tests.support.auth import identity_headers

from .conftest import DECIDE, MANAGE, PARTNERS, READ, days_ago, etag_of, outbox, run_job

pytestmark = pytest.mark.integration


def partner_with_disputes(runtime, name: str, disputes: int) -> uuid.UUID:
    partner = Partner(id=uuid.uuid4(), name=name, type="supplier", status="active")
    with runtime.session_factory() as s, s.begin():
        s.add(partner)
        s.flush()
        s.add_all(Dispute(partner_id=partner.id, category="quality", amount=Decimal("10.00"), currency="EUR",
                          status="open", opened_by="internal", opened_at=days_ago(3 + i), updated_at=days_ago(3 + i))
                  for i in range(disputes))
    return partner.id


def test_a_dispute_event_recommends_terminating_and_accepting_closes_the_portal(partners_app):
    runtime, client = partners_app.extensions["crm.runtime"], partners_app.test_client()
    quarrelsome = partner_with_disputes(runtime, "Quarrelsome Ltd", 5)
    partner_with_disputes(runtime, "Calm Co", 1)
    refused = client.post(f"{PARTNERS}/policies", json={"code": "serial_complainer"}, headers=MANAGE)
    assert refused.status_code == 422 and "code" in refused.get_json()["errors"]
    created = client.post(f"{PARTNERS}/policies", json={"code": "repeated_disputes"}, headers=MANAGE)
    policy = created.get_json()
    assert policy["parameters"]["min_disputes"] == 4 and policy["enabled"] is False

    started = client.post(f"{PARTNERS}/simulations", json={"policy_ids": [policy["id"]]}, headers=MANAGE)
    assert started.status_code == 202, started.get_json()
    run_job(runtime, termination.KIT)
    done = client.get(started.headers["Location"], headers=READ).get_json()
    assert done["status"] == "completed" and (done["subjects_seen"], done["subjects_flagged"]) == (2, 1)
    assert done["counts"]["by_finding"] == {"repeated_disputes": 1}
    assert done["counts"]["by_strategy"] == {"terminate": 1}
    subjects = client.get(f"{started.headers['Location']}/subjects", headers=READ).get_json()["items"]
    assert [s["subject_id"] for s in subjects] == [str(quarrelsome)]
    assert subjects[0]["findings"][0]["evidence"]["opened"] == 5
    with runtime.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Termination.Recommendation)) == 0
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 0

    # Enabled, the policy is evaluated when a dispute is opened (the evidence event's handler).
    url = f"{PARTNERS}/policies/{policy['id']}"
    enabled = client.patch(url, json={"enabled": True}, headers={**MANAGE, "If-Match": etag_of(created)})
    assert enabled.status_code == 200 and enabled.get_json()["version"] == 2
    asked = client.get(f"{PARTNERS}/evaluations", headers=READ).get_json()["items"]  # enabling asked for one
    assert [(r["mode"], r["status"], r["trigger"]) for r in asked] == [("evaluation", "pending", "policy")]
    assert client.get(f"{PARTNERS}/evaluations/{asked[0]['id']}", headers=READ).get_json()["policies"][0][
        "version"] == 2
    assert client.get(f"{PARTNERS}/evaluations/{done['id']}", headers=READ).status_code == 404  # a simulation
    told = termination.with_evaluation(handlers.HANDLERS, runtime)
    event = make_event("crm.dispute.opened", {"dispute_id": uuid.uuid4(), "partner_id": quarrelsome,
                                              "category": "quality", "status": "open", "opened_by": "internal",
                                              "occurred_at": days_ago(0)}, source="/services/partners")
    with runtime.uow() as uow:
        told["crm.dispute.opened"](uow, [event])
        uow.commit()
    recommended = outbox(runtime, OutboxMessage, "crm.termination.recommended")
    assert [(e["data"]["subject_kind"], e["data"]["subject_id"], e["data"]["strategy"]) for e in recommended] == [
        ("partner", str(quarrelsome), "terminate")]
    assert recommended[0]["causationid"] == str(event.id)
    rec_id = recommended[0]["data"]["recommendation_id"]

    portal = identity_headers(kind="partner", partner_id=str(quarrelsome), key_id="portal-key")
    assert client.get("/api/v1/partner-portal/me", headers=portal).status_code == 200
    decision_url = f"{PARTNERS}/recommendations/{rec_id}/decision"
    body = {"decision": "accept", "reason": "Five quality disputes in a week"}
    assert client.post(decision_url, json=body, headers=READ).status_code == 403
    accepted = client.post(decision_url, json=body, headers=DECIDE)
    assert accepted.status_code == 201, accepted.get_json()
    assert accepted.get_json()["effect"] == "partner_terminated"
    with runtime.session_factory() as s:
        assert s.scalar(select(Partner.status).where(Partner.id == quarrelsome)) == "terminated"
    ended = outbox(runtime, OutboxMessage, "crm.partner.terminated")
    assert [e["data"]["partner_id"] for e in ended] == [str(quarrelsome)]
    assert ended[0]["data"]["decision_id"] == accepted.get_json()["id"]
    assert client.get("/api/v1/partner-portal/me", headers=portal).status_code == 403
    decisions = client.get(f"{PARTNERS}/decisions", headers=READ).get_json()["items"]
    assert [(d["decision"], d["decided_by"]) for d in decisions] == [("accept", "operator")]
