"""Disputes through the internal API and the SLA job, on the real PostgreSQL."""
from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from crm.registry import SUITE
from services.common.db import utcnow
from services.partners import disputes
from services.partners.dispute_jobs import DisputeSlaJob
from services.partners.models import Delivery, Dispute, DisputeMessage

from .conftest import READ, RW, FreshIdentity

pytestmark = pytest.mark.integration

WRITE_ONLY = FreshIdentity("partners:write")
SLA_HOURS = 120.0


def _base(partner_id: str) -> str:
    return f"/api/v1/partners/{partner_id}/disputes"


def _body(**fields) -> dict:
    return {"category": "quality", "amount": "1250.50", "currency": "EUR", "invoice_reference": "INV-2026-0042",
            "message": "Twelve of forty pallets arrived damaged.", **fields}


def _if_match(version: int) -> dict:
    return {**RW, "If-Match": f'W/"{version}"'}


@pytest.fixture
def runtime(app):
    return app.extensions["crm.runtime"]


@pytest.fixture
def partner(api):
    return api.partner("Acme Supplies")


def _delivery(runtime, partner_id: str, reference: str = "PO-1") -> str:
    row = Delivery(id=uuid.uuid4(), partner_id=uuid.UUID(partner_id), order_reference=reference,
                   promised_on=date(2026, 3, 1), delivered_on=date(2026, 3, 2), quantity_ordered=Decimal(10),
                   quantity_delivered=Decimal(10), amount=Decimal("100.00"), currency="EUR")
    with runtime.session_factory() as s:
        s.add(row)
        s.commit()
        return str(row.id)


def _age(runtime, dispute_id: str, hours: float) -> None:
    """Move a dispute's opening back in time (the clock is not ours to turn)."""
    with runtime.session_factory() as s:
        s.execute(update(Dispute).where(Dispute.id == uuid.UUID(dispute_id))
                  .values(opened_at=utcnow() - timedelta(hours=hours), updated_at=Dispute.updated_at))
        s.commit()


def _open(client, partner_id: str, **fields) -> dict:
    r = client.post(_base(partner_id), headers=RW, json=_body(**fields))
    assert r.status_code == 201, r.text
    return r.json


# -- opening ------------------------------------------------------------------------------------------------

def test_opening_a_dispute_stores_it_with_its_first_message_and_records_opened(client, partner, store):
    r = client.post(_base(partner["id"]), headers=RW, json=_body())
    assert r.status_code == 201, r.text
    d = r.json
    assert (d["status"], d["category"], d["amount"], d["currency"], d["opened_by"], d["version"]) == (
        "open", "quality", "1250.50", "EUR", "internal", 1)
    assert d["overdue"] is False and d["overdue_at"] is None and d["resolution"] is None
    assert r.headers["ETag"] == 'W/"1"' and r.headers["Location"].endswith(f"/disputes/{d['id']}")
    assert client.get(f"{_base(partner['id'])}/{d['id']}", headers=READ).json == d
    thread = client.get(f"{_base(partner['id'])}/{d['id']}/messages", headers=READ).json["items"]
    assert [(m["side"], m["body"], m["author_key"]) for m in thread] == [
        ("internal", "Twelve of forty pallets arrived damaged.", "test-key")]
    (event,) = store.events("crm.dispute.opened")
    assert event["subject"] == d["id"]
    assert {k: event["data"][k] for k in ("dispute_id", "partner_id", "status", "amount", "opened_by")} == {
        "dispute_id": d["id"], "partner_id": partner["id"], "status": "open", "amount": "1250.50",
        "opened_by": "internal"}


def test_a_dispute_must_name_a_contract_delivery_or_invoice(client, partner, store):
    r = client.post(_base(partner["id"]), headers=RW, json=_body(invoice_reference=None))
    assert r.status_code == 422
    assert set(r.json["errors"]) == {"contract_id", "delivery_id", "invoice_reference"}
    assert store.count(Dispute) == 0


def test_a_dispute_about_the_partners_own_contract_and_delivery_is_opened(client, api, partner, runtime):
    contract = api.contract(partner["id"])
    delivery = _delivery(runtime, partner["id"])
    d = _open(client, partner["id"], contract_id=contract["id"], delivery_id=delivery, invoice_reference=None,
              category="quantity")
    assert (d["contract_id"], d["delivery_id"], d["invoice_reference"]) == (contract["id"], delivery, None)


def test_another_partners_contract_or_delivery_is_refused_like_an_unknown_one(client, api, partner, runtime, store):
    other = api.partner("Other Ltd")
    foreign_contract = api.contract(other["id"])["id"]
    foreign_delivery = _delivery(runtime, other["id"])
    for field, foreign in (("contract_id", foreign_contract), ("delivery_id", foreign_delivery)):
        r = client.post(_base(partner["id"]), headers=RW, json=_body(**{field: foreign}))
        unknown = client.post(_base(partner["id"]), headers=RW, json=_body(**{field: str(uuid.uuid4())}))
        assert r.status_code == unknown.status_code == 422, r.text
        assert r.json["errors"] == unknown.json["errors"] and set(r.json["errors"]) == {field}
    assert store.count(Dispute) == 0


@pytest.mark.parametrize("field, value", [
    ("category", "mood"), ("amount", "-1"), ("amount", "1.001"), ("amount", 12.5), ("currency", "eur"),
    ("message", "   "), ("invoice_reference", "x" * 101),
])
def test_an_invalid_dispute_is_a_422_naming_the_field(client, partner, field, value):
    r = client.post(_base(partner["id"]), headers=RW, json=_body(**{field: value}))
    assert r.status_code == 422 and field in r.json["errors"], r.text


def test_opening_for_an_unknown_partner_is_404_and_reads_need_the_scopes(client, partner):
    assert client.post(_base(str(uuid.uuid4())), headers=RW, json=_body()).status_code == 404
    assert client.post(_base(partner["id"]), headers=READ, json=_body()).status_code == 403
    assert client.get(_base(partner["id"]), headers=FreshIdentity("contacts:read")).status_code == 403


def test_a_write_only_key_gets_only_the_ids_of_what_it_opened(client, partner):
    r = client.post(_base(partner["id"]), headers=WRITE_ONLY, json=_body())
    assert r.status_code == 201 and set(r.json) == {"id", "version"}


def test_opening_again_with_the_same_idempotency_key_replays_and_opens_nothing(client, partner, store):
    headers = {**RW, "Idempotency-Key": "dispute-1"}
    first = client.post(_base(partner["id"]), headers=headers, json=_body())
    again = client.post(_base(partner["id"]), headers=headers, json=_body())
    assert first.status_code == again.status_code == 201
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert store.count(Dispute) == 1 and len(store.events("crm.dispute.opened")) == 1


# -- moving through the states ------------------------------------------------------------------------------

def test_a_dispute_moves_open_investigating_resolved_with_events_and_versions(client, partner, store):
    d = _open(client, partner["id"])
    url = f"{_base(partner['id'])}/{d['id']}"
    r = client.patch(url, headers=_if_match(1), json={"status": "investigating"})
    assert r.status_code == 200 and r.json["version"] == 2 and r.headers["ETag"] == 'W/"2"'
    r = client.patch(url, headers=_if_match(2), json={"status": "resolved", "resolution": "credit_note"})
    assert r.status_code == 200, r.text
    assert (r.json["status"], r.json["resolution"], r.json["version"]) == ("resolved", "credit_note", 3)
    assert r.json["resolved_at"] is not None
    updated = store.events("crm.dispute.updated")
    assert [(e["data"]["status"], e["data"]["resolution"]) for e in updated] == [
        ("investigating", None), ("resolved", "credit_note")]


def test_an_escalated_dispute_can_only_be_resolved(client, partner):
    d = _open(client, partner["id"])
    url = f"{_base(partner['id'])}/{d['id']}"
    assert client.patch(url, headers=_if_match(1), json={"status": "escalated"}).status_code == 200
    r = client.patch(url, headers=_if_match(2), json={"status": "investigating"})
    assert r.status_code == 409 and r.json["current_status"] == "escalated" and "escalated" in r.json["detail"]
    r = client.patch(url, headers=_if_match(2), json={"status": "resolved", "resolution": "rejected_claim"})
    assert r.status_code == 200 and r.json["resolution"] == "rejected_claim"


@pytest.mark.parametrize("moves, refused", [
    ([], {"status": "resolved", "resolution": "replacement"}),  # open -> resolved skips the investigation
    ([], {"status": "open"}),
    ([{"status": "investigating"}, {"status": "resolved", "resolution": "replacement"}], {"status": "escalated"}),
])
def test_invalid_transitions_are_409_naming_the_current_status(client, partner, store, moves, refused):
    d = _open(client, partner["id"])
    url = f"{_base(partner['id'])}/{d['id']}"
    for version, move in enumerate(moves, start=1):
        assert client.patch(url, headers=_if_match(version), json=move).status_code == 200
    current = client.get(url, headers=READ).json
    r = client.patch(url, headers=_if_match(current["version"]), json=refused)
    assert r.status_code == 409 and r.json["current_status"] == current["status"]
    assert current["status"] in r.json["detail"]
    assert client.get(url, headers=READ).json == current
    assert len(store.events("crm.dispute.updated")) == len(moves)


def test_resolving_needs_a_resolution_and_only_resolving_takes_one(client, partner):
    d = _open(client, partner["id"])
    url = f"{_base(partner['id'])}/{d['id']}"
    r = client.patch(url, headers=_if_match(1), json={"status": "investigating", "resolution": "credit_note"})
    assert r.status_code == 422 and "resolution" in r.json["errors"]
    client.patch(url, headers=_if_match(1), json={"status": "investigating"})
    r = client.patch(url, headers=_if_match(2), json={"status": "resolved"})
    assert r.status_code == 422 and "resolution" in r.json["errors"]


def test_a_move_needs_if_match_and_a_stale_one_is_412(client, partner, store):
    d = _open(client, partner["id"])
    url = f"{_base(partner['id'])}/{d['id']}"
    assert client.patch(url, headers=RW, json={"status": "investigating"}).status_code == 428
    assert client.patch(url, headers=_if_match(1), json={"status": "investigating"}).status_code == 200
    r = client.patch(url, headers=_if_match(1), json={"status": "escalated"})
    assert r.status_code == 412 and r.json["current_version"] == 2
    assert client.get(url, headers=READ).json["status"] == "investigating"
    assert len(store.events("crm.dispute.updated")) == 1


def test_another_partners_dispute_is_not_found_under_this_partner(client, api, partner):
    other = api.partner("Other Ltd")
    d = _open(client, other["id"])
    url = f"{_base(partner['id'])}/{d['id']}"
    assert client.get(url, headers=READ).status_code == 404
    assert client.patch(url, headers=_if_match(1), json={"status": "investigating"}).status_code == 404
    assert client.post(f"{url}/messages", headers=RW, json={"body": "hello"}).status_code == 404
    assert client.get(f"{url}/messages", headers=READ).status_code == 404


# -- messages -----------------------------------------------------------------------------------------------

def test_the_thread_is_oldest_first_in_pages_and_closes_when_resolved(client, partner, store):
    d = _open(client, partner["id"])
    url = f"{_base(partner['id'])}/{d['id']}"
    for body in ("We are looking into it.", "Photos received."):
        r = client.post(f"{url}/messages", headers=RW, json={"body": body})
        assert r.status_code == 201 and r.json["side"] == "internal"
    page1 = client.get(f"{url}/messages?limit=2", headers=READ).json
    page2 = client.get(f"{url}/messages?limit=2&cursor={page1['next_cursor']}", headers=READ).json
    assert [m["body"] for m in page1["items"] + page2["items"]] == [
        "Twelve of forty pallets arrived damaged.", "We are looking into it.", "Photos received."]
    assert page2["next_cursor"] is None
    client.patch(url, headers=_if_match(1), json={"status": "investigating"})
    client.patch(url, headers=_if_match(2), json={"status": "resolved", "resolution": "replacement"})
    r = client.post(f"{url}/messages", headers=RW, json={"body": "One more thing"})
    assert r.status_code == 409 and r.json["current_status"] == "resolved"
    assert store.count(DisputeMessage) == 3


# -- lists and the SLA --------------------------------------------------------------------------------------

def test_the_list_filters_by_status_and_overdue_and_pages(client, partner, runtime):
    old, late_resolved, fresh = (_open(client, partner["id"]) for _ in range(3))
    _age(runtime, old["id"], SLA_HOURS + 1)
    _age(runtime, late_resolved["id"], SLA_HOURS + 1)
    url = f"{_base(partner['id'])}/{late_resolved['id']}"
    client.patch(url, headers=_if_match(1), json={"status": "investigating"})
    client.patch(url, headers=_if_match(2), json={"status": "resolved", "resolution": "credit_note"})

    def ids(query: str) -> list[str]:
        r = client.get(f"{_base(partner['id'])}?{query}", headers=READ)
        assert r.status_code == 200, r.text
        return [d["id"] for d in r.json["items"]]

    assert ids("") == [fresh["id"], late_resolved["id"], old["id"]]  # the most recently opened first
    assert ids("overdue=true") == [old["id"]]
    assert ids("overdue=false") == [fresh["id"], late_resolved["id"]]
    assert ids("status=resolved") == [late_resolved["id"]]
    assert ids("sort=opened_at")[-1] == fresh["id"]
    got = client.get(f"{_base(partner['id'])}/{old['id']}", headers=READ).json
    assert got["overdue"] is True and got["overdue_at"] is None  # shown at once; the event waits for the job
    page1 = client.get(f"{_base(partner['id'])}?limit=2", headers=READ).json
    page2 = client.get(f"{_base(partner['id'])}?limit=2&cursor={page1['next_cursor']}", headers=READ).json
    assert [d["id"] for d in page1["items"] + page2["items"]] == ids("")
    assert client.get(f"{_base(str(uuid.uuid4()))}", headers=READ).status_code == 404
    assert client.get(f"{_base(partner['id'])}?status=closed", headers=READ).status_code == 422


def test_the_sla_job_records_overdue_once_per_dispute_and_skips_resolved_and_fresh(client, partner, runtime, store):
    late, fresh, resolved = (_open(client, partner["id"]) for _ in range(3))
    for d in (late, resolved):
        _age(runtime, d["id"], SLA_HOURS + 1)
    url = f"{_base(partner['id'])}/{resolved['id']}"
    client.patch(url, headers=_if_match(1), json={"status": "investigating"})
    client.patch(url, headers=_if_match(2), json={"status": "resolved", "resolution": "credit_note"})
    job = DisputeSlaJob(runtime)
    assert job.run_once() == 1
    assert job.run_once() == 0
    (event,) = store.events("crm.dispute.overdue")
    assert event["data"]["dispute_id"] == late["id"] and event["data"]["status"] == "open"
    got = client.get(f"{_base(partner['id'])}/{late['id']}", headers=READ).json
    assert got["overdue"] is True and got["overdue_at"] is not None
    assert got["updated_at"] == late["updated_at"] and got["version"] == 1  # passing the SLA changes nothing else
    assert client.get(f"{_base(partner['id'])}/{fresh['id']}", headers=READ).json["overdue_at"] is None


def test_the_sla_counts_from_the_setting(client, partner, runtime, store):
    d = _open(client, partner["id"])
    _age(runtime, d["id"], 3)
    assert disputes.mark_overdue(runtime.uow(), sla_hours=4) == 0
    assert disputes.mark_overdue(runtime.uow(), sla_hours=2) == 1
    assert len(store.events("crm.dispute.overdue")) == 1


def test_two_workers_never_record_the_same_overdue_dispute_twice(client, partner, runtime, store):
    first, second = (_open(client, partner["id"]) for _ in range(2))
    for d in (first, second):
        _age(runtime, d["id"], SLA_HOURS + 1)
    # Another worker holds `first` in its transaction: this one skips it and takes `second`.
    with runtime.session_factory() as other:
        other.scalar(select(Dispute).where(Dispute.id == uuid.UUID(first["id"])).with_for_update())
        assert disputes.mark_overdue(runtime.uow(), sla_hours=SLA_HOURS) == 1
        # The other worker marks `first` and commits.
        other.execute(update(Dispute).where(Dispute.id == uuid.UUID(first["id"])).values(overdue_at=utcnow()))
        other.commit()
    assert disputes.mark_overdue(runtime.uow(), sla_hours=SLA_HOURS) == 0
    assert [e["data"]["dispute_id"] for e in store.events("crm.dispute.overdue")] == [second["id"]]


def test_the_partners_worker_runs_the_sla_job(partners_settings):
    worker = SUITE.create_worker("partners", partners_settings)
    try:
        assert "dispute_sla" in worker.jobs
    finally:
        worker.runtime.engine.dispose()
