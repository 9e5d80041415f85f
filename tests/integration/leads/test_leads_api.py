"""The leads service on the real PostgreSQL: its routes, its events and its handler."""
from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import func, select

from services.common.catalog import make_event
from services.common.consumer import InboxDispatcher
from services.leads import handlers
from services.leads.models import Lead, LeadTouch, OutboxMessage
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

RW = identity_headers("leads:read", "leads:write")


@pytest.fixture
def leads(service_app):
    return service_app("leads")


def _count(app, model, *where) -> int:
    with app.extensions["crm.runtime"].session_factory() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def _events(app, event_type: str) -> int:
    return _count(app, OutboxMessage, OutboxMessage.event_type == event_type)


def test_capturing_a_lead_scores_it_with_explained_factors_and_records_the_event(leads):
    r = leads.test_client().post("/api/v1/leads", headers=RW, json={
        "email": "CTO@Acme-Robotics.example", "first_name": "Lin", "last_name": "Wu", "company": "Acme Robotics",
        "job_title": "CTO", "phone": "+49 30 1234567", "source": "referral", "campaign": "spring"})
    assert r.status_code == 201, r.text
    lead = r.json
    assert lead["status"] == "new" and lead["touch_count"] == 1
    codes = {f["code"]: f for f in lead["score_factors"]}
    assert {"completeness", "company_domain", "seniority", "source_quality"} <= set(codes)
    assert lead["score"] == max(0, min(100, sum(f["points"] for f in lead["score_factors"])))
    assert lead["score_degraded"] == []
    assert _events(leads, "crm.lead.created") == 1


def test_an_open_lead_with_the_same_normalised_email_is_not_duplicated(leads):
    c = leads.test_client()
    first = c.post("/api/v1/leads", headers=RW, json={"email": "ann@corp.example", "source": "web_form"}).json
    again = c.post("/api/v1/leads", headers=RW, json={"email": "  ANN@Corp.Example ", "source": "event",
                                                        "job_title": "Head of IT"})
    assert again.status_code == 200
    body = again.json
    assert body["id"] == first["id"] and body["touch_count"] == 2
    assert body["job_title"] == "Head of IT", "an empty field is filled from the new touch"
    assert [t["source"] for t in body["touches"]] == ["event", "web_form"]
    assert _count(leads, Lead) == 1 and _count(leads, LeadTouch) == 2


def test_concurrent_captures_of_one_person_make_one_lead(leads):
    barrier = threading.Barrier(8)
    statuses = []

    def capture():
        c = leads.test_client()
        barrier.wait()
        statuses.append(c.post("/api/v1/leads", headers=RW, json={"email": "race@corp.example"}).status_code)

    threads = [threading.Thread(target=capture) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 7 + [201]
    assert _count(leads, Lead) == 1 and _count(leads, LeadTouch) == 8


def test_converting_twice_gives_the_same_result_and_one_event(leads):
    c = leads.test_client()
    lead = c.post("/api/v1/leads", headers=RW, json={"email": "conv@corp.example"}).json
    first = c.post(f"/api/v1/leads/{lead['id']}/convert", headers=RW)
    second = c.post(f"/api/v1/leads/{lead['id']}/convert", headers=RW)
    assert first.status_code == second.status_code == 202
    assert first.json["status"] == second.json["status"] == "converting"
    assert _events(leads, "crm.lead.converted") == 1


def test_concurrent_converts_record_one_event(leads):
    c = leads.test_client()
    lead = c.post("/api/v1/leads", headers=RW, json={"email": "cc@corp.example"}).json
    barrier = threading.Barrier(6)

    def convert():
        barrier.wait()
        assert leads.test_client().post(f"/api/v1/leads/{lead['id']}/convert", headers=RW).status_code == 202

    threads = [threading.Thread(target=convert) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _events(leads, "crm.lead.converted") == 1


def test_a_disqualified_lead_cannot_be_converted(leads):
    c = leads.test_client()
    lead = c.post("/api/v1/leads", headers=RW, json={"email": "dq@corp.example"}).json
    assert c.patch(f"/api/v1/leads/{lead['id']}", headers=RW, json={"status": "disqualified"}).status_code == 200
    r = c.post(f"/api/v1/leads/{lead['id']}/convert", headers=RW)
    assert r.status_code == 409
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert _events(leads, "crm.lead.converted") == 0


def test_contact_created_links_the_lead_once_even_when_delivered_twice(leads):
    c = leads.test_client()
    lead = c.post("/api/v1/leads", headers=RW, json={"email": "link@corp.example"}).json
    c.post(f"/api/v1/leads/{lead['id']}/convert", headers=RW)
    rt = leads.extensions["crm.runtime"]
    dispatcher = InboxDispatcher(lambda **kw: rt.uow(**kw), rt.inbox_model, handlers.HANDLERS)
    contact_id = uuid.uuid4()
    event = make_event("crm.contact.created", {"contact_id": contact_id, "email": "link@corp.example",
                                               "lead_id": lead["id"], "matched": False}, source="/services/contacts")
    assert dispatcher.dispatch(event) is True
    assert dispatcher.dispatch(event) is False
    got = c.get(f"/api/v1/leads/{lead['id']}", headers=RW).json
    assert got["status"] == "converted" and got["contact_id"] == str(contact_id)


def test_listing_filters_and_pages(leads):
    c = leads.test_client()
    for i in range(5):
        c.post("/api/v1/leads", headers=RW, json={"email": f"l{i}@corp.example", "source": "referral" if i % 2 else "event"})
    page1 = c.get("/api/v1/leads?limit=2&source=event", headers=RW).json
    page2 = c.get(f"/api/v1/leads?limit=2&source=event&cursor={page1['next_cursor']}", headers=RW).json
    assert [i["email"] for i in page1["items"] + page2["items"]] == ["l4@corp.example", "l2@corp.example", "l0@corp.example"]
    assert page2["next_cursor"] is None
    bad = c.get("/api/v1/leads?status=maybe&min_score=500", headers=RW)
    assert bad.status_code == 422 and {"status", "min_score"} <= set(bad.json["errors"])


@pytest.mark.parametrize("method, path, kwargs, status", [
    ("get", "/api/v1/leads/not-a-uuid", {}, 404),
    ("get", f"/api/v1/leads/{uuid.uuid4()}", {}, 404),
    ("delete", "/api/v1/leads", {}, 405),
    ("post", "/api/v1/leads", {"data": "email=a@b.c", "content_type": "application/x-www-form-urlencoded"}, 415),
])
def test_errors_are_problem_details(leads, method, path, kwargs, status):
    r = getattr(leads.test_client(), method)(path, headers=RW, **kwargs)
    assert r.status_code == status
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json["status"] == status


def test_scopes_guard_every_route(leads):
    c = leads.test_client()
    read_only = identity_headers("leads:read")
    assert c.post("/api/v1/leads", headers=read_only, json={"email": "x@corp.example"}).status_code == 403
    assert c.get("/api/v1/leads", headers=identity_headers("contacts:read")).status_code == 403
    assert c.get("/api/v1/leads").status_code == 401
    assert _count(leads, Lead) == 0


def test_an_unexpected_failure_is_a_500_without_a_stack_trace(leads):
    leads.extensions["crm.runtime"].plugins = None  # scoring now fails with an AttributeError inside the use case
    leads.config["PROPAGATE_EXCEPTIONS"] = False
    r = leads.test_client().post("/api/v1/leads", headers=RW, json={"email": "boom@corp.example"})
    assert r.status_code == 500
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert "Traceback" not in r.text and "AttributeError" not in r.text
    assert _count(leads, Lead) == 0
