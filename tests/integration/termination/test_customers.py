"""Termination policies for customers on PostgreSQL: policy records, a simulation run by the worker's job, the
evaluation's recommendation rules (new, refreshed, superseded, dismissed, withdrawn) and the operators' decisions."""
from __future__ import annotations

import dataclasses
import uuid

import pytest
from sqlalchemy import create_engine, delete, func, select, update

from services.common.catalog import make_event
from services.common.termination import evidence
from services.common.termination.jobs import TerminationJob
from services.common.termination.runs import LeaseLost, RunRunner
from services.contacts import handlers, termination
from services.contacts.models import Contact, ContactPayment, OutboxMessage, Termination

from tests.support.auth import identity_headers

from .conftest import (
    CUSTOMERS,
    DECIDE,
    MANAGE,
    READ,
    at,
    create_policy,
    etag_of,
    outbox,
    run_job,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def runtime(contacts_app):
    return contacts_app.extensions["crm.runtime"]


@pytest.fixture
def client(contacts_app):
    return contacts_app.test_client()


@pytest.fixture
def kit(runtime):
    return termination.build_kit(runtime.settings)


def test_policies_are_created_checked_and_changed_under_if_match(client):
    created = client.post(f"{CUSTOMERS}/policies", json={"code": "fraud"}, headers=MANAGE)
    assert created.status_code == 201, created.get_json()
    policy = created.get_json()
    assert etag_of(created) == 'W/"1"' and created.headers["Location"].endswith(policy["id"])
    assert policy["plugin"] == "builtin.termination" and policy["enabled"] is False and policy["version"] == 1
    assert policy["name"] == "Fraud" and policy["parameters"]["min_flags"] == 1
    assert policy["parameters"]["strategy"] == "terminate"

    def refused(body):
        r = client.post(f"{CUSTOMERS}/policies", json=body, headers=MANAGE)
        assert r.status_code == 422, r.get_json()
        return r.get_json()["errors"]

    assert "code" in refused({"code": "late_deliveries"})  # a partner policy on the customers' side
    assert "parameters.min_complaints" in refused({"code": "serial_complainer", "parameters": {"min_complaints": 0}})
    assert "parameters.bogus" in refused({"code": "deal_seeker", "parameters": {"bogus": 1}})
    assert "plugin" in refused({"code": "vip_churn"})
    assert "plugin" in refused({"code": "vip_churn", "plugin": "no_such_plugin"})
    assert "plugin" in refused({"code": "fraud", "plugin": "someone_else"})
    assert "code" in refused({"code": "Not A Slug"})
    again = client.post(f"{CUSTOMERS}/policies", json={"code": "fraud"}, headers=MANAGE)
    assert again.status_code == 409 and again.get_json()["policy_id"] == policy["id"]

    url = f"{CUSTOMERS}/policies/{policy['id']}"
    change = {"enabled": True, "parameters": {"high_flags": 3}}
    assert client.patch(url, json=change, headers=MANAGE).status_code == 428
    assert client.patch(url, json=change, headers={**MANAGE, "If-Match": 'W/"7"'}).status_code == 412
    assert client.patch(url, json=change, headers={**READ, "If-Match": 'W/"1"'}).status_code == 403
    changed = client.patch(url, json=change, headers={**MANAGE, "If-Match": 'W/"1"'})
    assert changed.status_code == 200, changed.get_json()
    assert etag_of(changed) == 'W/"2"'
    body = changed.get_json()
    assert body["enabled"] is True and body["parameters"]["high_flags"] == 3 and body["parameters"]["min_flags"] == 1
    bad = client.patch(url, json={"parameters": {"high_flags": 0}}, headers={**MANAGE, "If-Match": 'W/"2"'})
    assert bad.status_code == 422 and "parameters.high_flags" in bad.get_json()["errors"]
    reset = client.patch(url, json={"parameters": {"high_flags": None}}, headers={**MANAGE, "If-Match": "*"})
    assert reset.get_json()["parameters"]["high_flags"] == 2 and reset.get_json()["version"] == 3

    assert client.get(url, headers=READ).headers["ETag"] == 'W/"3"'
    listed = client.get(f"{CUSTOMERS}/policies", query_string={"enabled": "true"}, headers=READ).get_json()
    assert [p["code"] for p in listed["items"]] == ["fraud"]


def test_a_simulation_runs_in_the_worker_in_batches_and_changes_nothing(client, runtime, kit, customers):
    complainer, fraudster, clean = customers.contact("carla"), customers.contact("frank"), customers.contact("cleo")
    gone = customers.contact("gone", status="terminated")
    customers.purchases(complainer, 4)
    customers.complaints(complainer, 3)
    customers.flag(fraudster)
    customers.flag(gone)
    customers.purchases(clean, 3)
    create_policy(client, CUSTOMERS, "serial_complainer", enabled=False)
    create_policy(client, CUSTOMERS, "fraud", enabled=False)
    create_policy(client, CUSTOMERS, "late_payer", enabled=False)

    key = {**MANAGE, "Idempotency-Key": "sim-1"}
    started = client.post(f"{CUSTOMERS}/simulations", json={"window_days": 180}, headers=key)
    assert started.status_code == 202, started.get_json()
    run = started.get_json()
    assert started.headers["Location"] == f"{CUSTOMERS}/simulations/{run['id']}"
    assert run["status"] == "pending" and [p["code"] for p in run["policies"]] == [
        "serial_complainer", "fraud", "late_payer"]
    replay = client.post(f"{CUSTOMERS}/simulations", json={"window_days": 180}, headers=key)
    assert replay.get_json()["id"] == run["id"] and replay.headers["Idempotent-Replayed"] == "true"
    assert client.post(f"{CUSTOMERS}/simulations", json={"codes": ["nope"]}, headers=MANAGE).status_code == 422

    run_job(runtime, kit, batch_size=2)  # three eligible contacts: two batches

    done = client.get(started.headers["Location"], headers=READ).get_json()
    assert done["status"] == "completed" and done["window_days"] == 180
    assert (done["subjects_seen"], done["subjects_flagged"], done["batches"]) == (3, 2, 2)
    assert done["counts"]["by_finding"] == {"serial_complainer": 1, "fraud": 1}
    assert done["counts"]["by_strategy"] == {"re_specify": 1, "terminate": 1}
    assert done["counts"]["by_severity"] == {"high": 1, "medium": 1}

    subjects = f"{CUSTOMERS}/simulations/{run['id']}/subjects"
    first = client.get(subjects, query_string={"limit": 1}, headers=READ).get_json()
    second = client.get(subjects, query_string={"limit": 1, "cursor": first["next_cursor"]}, headers=READ).get_json()
    assert second["next_cursor"] is None
    assert {first["items"][0]["subject_id"], second["items"][0]["subject_id"]} == {str(complainer), str(fraudster)}
    frauds = client.get(subjects, query_string={"finding": "fraud"}, headers=READ).get_json()["items"]
    assert [s["subject_id"] for s in frauds] == [str(fraudster)]
    finding = frauds[0]["findings"][0]
    assert finding["plugin"] == "builtin.termination" and finding["evidence"]["flags"] == 1
    complaints = client.get(subjects, query_string={"strategy": "re_specify", "severity": "high"},
                            headers=READ).get_json()["items"]
    assert [s["subject_id"] for s in complaints] == [str(complainer)]
    assert client.get(subjects, query_string={"severity": "low"}, headers=READ).get_json()["items"] == []

    # Nothing but the run changed: no recommendation, no event, every contact as it was.
    with runtime.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Termination.Recommendation)) == 0
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        assert s.scalar(select(func.count()).where(Contact.status == "terminated")) == 1
    assert [r["id"] for r in client.get(f"{CUSTOMERS}/simulations", headers=READ).get_json()["items"]] == [run["id"]]


def test_a_run_whose_worker_died_is_resumed_after_its_last_committed_batch(client, runtime, kit, customers):
    for name in ("ann", "ben", "cat"):
        customers.flag(customers.contact(name))
    create_policy(client, CUSTOMERS, "fraud", enabled=False)
    run_id = client.post(f"{CUSTOMERS}/simulations", json={}, headers=MANAGE).get_json()["id"]

    class Died(BaseException):
        """The worker process ended in the middle of a run."""

    def die(_timing):
        raise Died

    first = RunRunner(runtime, kit, batch_size=1, lease_seconds=30)
    assert str(first.claim()) == run_id
    with pytest.raises(Died):
        first.run(uuid.UUID(run_id), on_batch=die)  # the first batch committed, then the worker was gone
    assert RunRunner(runtime, kit).claim() is None  # its lease still holds
    with runtime.session_factory() as s, s.begin():
        held = s.scalar(select(Termination.Run).where(Termination.Run.id == uuid.UUID(run_id)))
        assert (held.subjects_seen, held.batches) == (1, 1)
        held.lease_until = at("2020-01-01T00:00:00")  # time passes: the lease expires

    run_job(runtime, kit, batch_size=1)
    done = client.get(f"{CUSTOMERS}/simulations/{run_id}", headers=READ).get_json()
    assert done["status"] == "completed" and done["subjects_seen"] == 3 and done["subjects_flagged"] == 3
    assert done["counts"]["by_finding"] == {"fraud": 3}
    with pytest.raises(LeaseLost):
        first.run(uuid.UUID(run_id))


def test_evaluations_recommend_refresh_supersede_suppress_withdraw_and_operators_decide(client, runtime, kit,
                                                                                       customers):
    fraudster, complainer, payer = customers.contact("frank"), customers.contact("carla"), customers.contact("pat")
    customers.flag(fraudster)
    customers.purchases(complainer, 4)
    customers.complaints(complainer, 3)
    customers.payments(payer, on_time=1, late=3)
    job = TerminationJob(runtime, kit)
    assert job.check_schedule(at("2026-01-01T10:00:00")) is None  # no enabled policy: nothing to evaluate
    for code in ("fraud", "serial_complainer", "late_payer"):
        create_policy(client, CUSTOMERS, code)
    create_policy(client, CUSTOMERS, "deal_seeker", enabled=False)
    with runtime.session_factory() as s:  # enabling asked for an evaluation; the three requests coalesced
        (waiting,) = s.scalars(select(Termination.Run).where(Termination.Run.mode == "evaluation")).all()
        assert waiting.trigger == "policy" and waiting.status == "pending"
        assert [p["code"] for p in waiting.policies] == ["fraud", "serial_complainer", "late_payer"]
    asked = job.check_schedule(at("2026-01-01T10:00:00"))
    assert job.check_schedule(at("2026-01-01T11:00:00")).id == asked.id  # the same daily slot: asked once
    assert [p["code"] for p in asked.policies] == ["fraud", "serial_complainer", "late_payer"]
    assert job.run_once() is True and job.run_once() is True  # the policies' evaluation, then the schedule's

    recs = {r["subject_id"]: r for r in client.get(f"{CUSTOMERS}/recommendations", query_string={"status": "open"},
                                                  headers=READ).get_json()["items"]}
    assert {k: r["strategy"] for k, r in recs.items()} == {
        str(fraudster): "terminate", str(complainer): "re_specify", str(payer): "raise_price"}
    events = outbox(runtime, OutboxMessage, "crm.termination.recommended")
    assert len(events) == 3 and {e["data"]["subject_kind"] for e in events} == {"customer"}
    one = client.get(f"{CUSTOMERS}/recommendations/{recs[str(payer)]['id']}", headers=READ).get_json()
    assert one["findings"][0]["code"] == "late_payer" and one["findings"][0]["evidence"]["late"] == 3

    # Evidence events evaluate just their contacts, in the consumer's transaction.
    told = termination.with_evaluation(handlers.HANDLERS, runtime)

    def flagged(contact_id):
        flag_id = customers.flag(contact_id)
        data = {"flag_id": flag_id, "contact_id": contact_id, "code": "chargeback",
                "occurred_at": at("2026-01-01T12:00:00")}
        event = make_event("crm.contact.flagged", data, source="/services/contacts")
        with runtime.uow() as uow:
            told["crm.contact.flagged"](uow, [event])
            uow.commit()

    flagged(fraudster)  # the same findings again, now high: refreshed, no new recommendation
    refreshed = client.get(f"{CUSTOMERS}/recommendations/{recs[str(fraudster)]['id']}", headers=READ).get_json()
    assert refreshed["status"] == "open" and refreshed["severity"] == "high"
    assert refreshed["findings"][0]["evidence"]["flags"] == 2
    flagged(payer)  # a new finding: the open recommendation is superseded by a new one
    old = client.get(f"{CUSTOMERS}/recommendations/{recs[str(payer)]['id']}", headers=READ).get_json()
    assert old["status"] == "superseded" and old["superseded_by"]
    new = client.get(f"{CUSTOMERS}/recommendations/{old['superseded_by']}", headers=READ).get_json()
    assert new["status"] == "open" and {f["code"] for f in new["findings"]} == {"late_payer", "fraud"}
    assert len(outbox(runtime, OutboxMessage, "crm.termination.recommended")) == 4

    # Decisions: only termination:decide; a reason is required; only an open recommendation.
    decide = f"{CUSTOMERS}/recommendations/{recs[str(complainer)]['id']}/decision"
    assert client.post(decide, json={"decision": "dismiss", "reason": "x"}, headers=MANAGE).status_code == 403
    assert client.post(decide, json={"decision": "dismiss", "reason": ""}, headers=DECIDE).status_code == 422
    dismissed = client.post(decide, json={"decision": "dismiss", "reason": "A new product line fixes it"},
                            headers=DECIDE)
    assert dismissed.status_code == 201, dismissed.get_json()
    assert dismissed.get_json()["effect"] == "none" and dismissed.get_json()["decided_by"] == "operator"

    accept = f"{CUSTOMERS}/recommendations/{recs[str(fraudster)]['id']}/decision"
    key = {**DECIDE, "Idempotency-Key": "accept-frank"}
    accepted = client.post(accept, json={"decision": "accept", "reason": "Two chargebacks"}, headers=key)
    assert accepted.status_code == 201, accepted.get_json()
    decision = accepted.get_json()
    assert decision["effect"] == "contact_terminated" and decision["strategy"] == "terminate"
    assert decision["findings"][0]["evidence"]["flags"] == 2  # the evidence as it was when decided
    assert client.post(accept, json={"decision": "accept", "reason": "Two chargebacks"},
                       headers=key).get_json()["id"] == decision["id"]
    again = client.post(accept, json={"decision": "dismiss", "reason": "Changed my mind"}, headers=DECIDE)
    assert again.status_code == 409 and again.get_json()["recommendation_status"] == "accepted"
    with runtime.session_factory() as s:
        assert s.scalar(select(Contact.status).where(Contact.id == fraudster)) == "terminated"
    terminated = outbox(runtime, OutboxMessage, "crm.contact.terminated")
    assert [e["data"]["contact_id"] for e in terminated] == [str(fraudster)]
    assert terminated[0]["data"]["decision_id"] == decision["id"]
    decided = outbox(runtime, OutboxMessage, "crm.termination.decided")
    assert [e["data"]["decision"] for e in decided] == ["dismissed", "accepted"]
    listed = client.get(f"{CUSTOMERS}/decisions", query_string={"subject_id": str(fraudster)}, headers=READ)
    assert [d["id"] for d in listed.get_json()["items"]] == [decision["id"]]

    # The next scheduled evaluation: the dismissed findings are not recommended again, the payer no longer
    # flagged has its open recommendation withdrawn, the terminated contact is not judged.
    customers.clear_flags(payer)
    with runtime.session_factory() as s, s.begin():
        s.execute(delete(ContactPayment).where(ContactPayment.contact_id == payer))
    job.check_schedule(at("2026-01-02T10:00:00"))
    assert job.run_once() is True
    with runtime.session_factory() as s:
        run = s.scalar(select(Termination.Run).order_by(Termination.Run.seq.desc()).limit(1))
    assert run.status == "completed" and run.subjects_seen == 2
    assert run.counts["recommendations"] == {"recommended": 0, "refreshed": 0, "superseded": 0, "suppressed": 1,
                                             "withdrawn": 1}
    assert client.get(f"{CUSTOMERS}/recommendations/{new['id']}", headers=READ).get_json()["status"] == "withdrawn"
    assert client.get(f"{CUSTOMERS}/recommendations", query_string={"status": "open"},
                      headers=READ).get_json()["items"] == []
    assert len(outbox(runtime, OutboxMessage, "crm.termination.recommended")) == 4

    # Erasing the dismissed customer: its recommendation goes, the decision stays without reason or evidence.
    erased = client.post(f"/api/v1/contacts/{complainer}/erasure", json={},
                         headers=identity_headers("contacts:erase", "contacts:read"))
    assert erased.status_code in (200, 201, 202), erased.get_json()
    assert client.get(f"{CUSTOMERS}/recommendations", query_string={"subject_id": str(complainer)},
                      headers=READ).get_json()["items"] == []
    kept = client.get(f"{CUSTOMERS}/decisions", query_string={"subject_id": str(complainer)}, headers=READ)
    assert [(d["decision"], d["reason"], d["findings"]) for d in kept.get_json()["items"]] == [
        ("dismiss", "(erased)", [])]


def test_evaluations_are_read_newest_first_and_by_the_id_a_recommendation_names_but_a_simulation_is_not_one(
        client, runtime, kit, customers):
    fraudster = customers.contact("fred")
    customers.flag(fraudster)
    create_policy(client, CUSTOMERS, "fraud")  # enabled: asks for an evaluation (trigger policy)
    job = TerminationJob(runtime, kit)
    scheduled = job.check_schedule(at("2026-01-01T10:00:00"))
    simulation = client.post(f"{CUSTOMERS}/simulations", json={}, headers=MANAGE).get_json()
    waiting = client.get(f"{CUSTOMERS}/evaluations", query_string={"status": "pending"}, headers=READ).get_json()
    assert [r["id"] for r in waiting["items"]] == [str(scheduled.id), waiting["items"][1]["id"]]
    assert [r["trigger"] for r in waiting["items"]] == ["schedule", "policy"]
    for _ in range(3):
        assert job.run_once() is True
    assert job.run_once() is False

    first = client.get(f"{CUSTOMERS}/evaluations", query_string={"limit": 1}, headers=READ)
    assert first.status_code == 200, first.get_json()
    page = first.get_json()
    assert [r["id"] for r in page["items"]] == [str(scheduled.id)] and page["next_cursor"]
    rest = client.get(f"{CUSTOMERS}/evaluations", query_string={"limit": 1, "cursor": page["next_cursor"]},
                      headers=READ).get_json()
    assert [r["trigger"] for r in rest["items"]] == ["policy"] and rest["next_cursor"] is None
    assert client.get(f"{CUSTOMERS}/evaluations", query_string={"status": "pending"},
                      headers=READ).get_json()["items"] == []

    (rec,) = client.get(f"{CUSTOMERS}/recommendations", headers=READ).get_json()["items"]
    assert rec["run_id"] == rest["items"][0]["id"]  # the evaluation that made it
    made = client.get(f"{CUSTOMERS}/evaluations/{rec['run_id']}", headers=READ)
    assert made.status_code == 200, made.get_json()
    evaluation = made.get_json()
    assert (evaluation["mode"], evaluation["status"], evaluation["subjects_flagged"]) == ("evaluation", "completed", 1)
    assert evaluation["counts"]["recommendations"]["recommended"] == 1
    assert [p["code"] for p in evaluation["policies"]] == ["fraud"]

    for unknown in (simulation["id"], str(uuid.uuid4())):
        missing = client.get(f"{CUSTOMERS}/evaluations/{unknown}", headers=READ)
        assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
        assert unknown in missing.get_json()["detail"]
    assert client.get(f"{CUSTOMERS}/simulations/{rec['run_id']}", headers=READ).status_code == 404
    assert [r["id"] for r in client.get(f"{CUSTOMERS}/simulations", headers=READ).get_json()["items"]] == [
        simulation["id"]]


def test_a_policy_another_process_enables_judges_the_next_evidence_batch_and_none_enabled_reads_no_history(
        client, runtime, customers):
    fraudster = customers.contact("fay")
    base, reads = termination.build_kit(runtime.settings), []

    def histories(session, ids, *rest):
        reads.append(list(ids))
        return base.adapter.histories(session, ids, *rest)

    kit = dataclasses.replace(base, adapter=dataclasses.replace(base.adapter, histories=histories))
    handle = evidence.with_evaluation(handlers.HANDLERS, runtime, kit)["crm.contact.flagged"]

    def flagged():
        data = {"flag_id": customers.flag(fraudster), "contact_id": fraudster, "code": "chargeback",
                "occurred_at": at("2026-01-01T12:00:00")}
        with runtime.uow() as uow:
            handle(uow, [make_event("crm.contact.flagged", data, source="/services/contacts")])
            uow.commit()

    policy = create_policy(client, CUSTOMERS, "fraud", enabled=False)
    flagged()
    assert reads == []  # no policy enabled: the batch read no history and recommended nothing
    # Enabled by another process: a commit this one learns of only from the database.
    other = create_engine(runtime.settings.database_url)
    try:
        with other.begin() as conn:
            conn.execute(update(Termination.Policy).where(Termination.Policy.id == uuid.UUID(policy["id"]))
                         .values(enabled=True))
    finally:
        other.dispose()
    flagged()
    assert reads == [[fraudster]]
    recommended = client.get(f"{CUSTOMERS}/recommendations", headers=READ).get_json()["items"]
    assert [(r["subject_id"], r["strategy"]) for r in recommended] == [(str(fraudster), "terminate")]


def test_a_merge_withdraws_the_merged_contacts_open_recommendation_and_hands_its_records_to_the_survivor(
        runtime, customers):
    from services.contacts.merges import merge_contacts

    survivor, merged = customers.contact("sam"), customers.contact("max")
    rec = dict(severity="high", strategy="terminate", findings=[], fingerprint="f" * 64)
    with runtime.session_factory() as s, s.begin():
        s.add_all([Termination.Recommendation(subject_id=merged, **rec),
                   Termination.Recommendation(subject_id=merged, status="dismissed", **rec)])
    dry = merge_contacts(runtime.uow(), survivor, merged, actor="test", dry_run=True)
    assert dry["moved"]["termination_recommendations"] == 2
    done = merge_contacts(runtime.uow(), survivor, merged, actor="test")
    assert done["moved"]["termination_recommendations"] == 2
    with runtime.session_factory() as s:
        rows = s.scalars(select(Termination.Recommendation).order_by(Termination.Recommendation.seq)).all()
    assert [(r.subject_id, r.status) for r in rows] == [(survivor, "withdrawn"), (survivor, "dismissed")]
    assert rows[0].closed_at is not None
