"""Erasure in contacts on the real PostgreSQL: what the request erases, the repeat, 410 afterwards, the scope, and
the worker's part (messages purged, confirmations, completion)."""
from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select, update

from crm.registry import SUITE
from services.common.catalog import make_event, parse_event
from services.common.consumer import InboxDispatcher
from services.common.db import utcnow
from services.contacts import handlers
from services.contacts.erasure import STEPS, with_confirmers
from services.contacts.models import (
    ConsentChange,
    ContactLead,
    Erasure,
    ErasureConfirmation,
    Feedback,
    IdempotencyRecord,
    InboxEntry,
    Interaction,
    OutboxMessage,
    TimelineEntry,
)
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

BASE = "/api/v1/contacts"
ERASER = identity_headers("contacts:erase")
RW = identity_headers("contacts:read", "contacts:write")
EMAIL = "Zyx.Erase_Me@Example.com"
NAME = {"first_name": "Zyxwvuta", "last_name": "Qopmnlkj"}


def _person(client, email=EMAIL, key=None, **fields) -> str:
    headers = {**RW, "Idempotency-Key": key} if key else RW
    r = client.post(BASE, json={"email": email, **fields}, headers=headers)
    assert r.status_code == 201, r.get_data(as_text=True)
    contact_id = r.json["id"]
    for path, body in (("interactions", {"type": "call", "channel": "phone", "direction": "inbound",
                                        "summary": "Zyxwvuta called about the invoice"}),
                       ("feedback", {"kind": "nps", "score": 9, "comment": "Zyxwvuta is happy"}),
                       ("consents", {"changes": [{"channel": "email", "purpose": "marketing", "status": "granted",
                                                  "source": "web-form", "text_version": "v1"}]})):
        r = client.post(f"{BASE}/{contact_id}/{path}", json=body, headers=RW)
        assert r.status_code == 201, (path, r.get_data(as_text=True))
    return contact_id


def _with_lead(runtime, contact_id: str) -> uuid.UUID:
    """A lead the person came from, with an entry of its own on the timeline (as the consumer would add)."""
    lead_id = uuid.uuid4()
    with runtime.session_factory() as s, s.begin():
        s.add(ContactLead(lead_id=lead_id, contact_id=uuid.UUID(contact_id)))
        s.add(TimelineEntry(id=uuid.uuid4(), lead_id=lead_id, kind="lead_created", occurred_at=func.now(),
                            summary="Lead captured", data={}, source="leads"))
    return lead_id


def _count(runtime, model, *where) -> int:
    with runtime.session_factory() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def _publish_all(runtime) -> None:
    """Mark the outbox published, as the relay would have by now."""
    with runtime.session_factory() as s, s.begin():
        s.execute(update(OutboxMessage).where(OutboxMessage.published_at.is_(None)).values(published_at=func.now()))


def _erase(client, contact_id, headers=ERASER):
    return client.post(f"{BASE}/{contact_id}/erasure", headers=headers)


def test_erasing_a_person_removes_every_row_that_holds_them_and_announces_it(client, runtime, store):
    ann = _person(client, key="create-ann", **NAME)
    lead_id = _with_lead(runtime, ann)
    bob = _person(client, email="bob@example.com", first_name="Bob")
    cid = uuid.UUID(ann)
    on_timeline = _count(runtime, TimelineEntry, (TimelineEntry.contact_id == cid) | (TimelineEntry.lead_id == lead_id))

    r = _erase(client, ann)

    assert r.status_code == 202, r.get_data(as_text=True)
    body = r.json
    assert r.headers["Location"] == f"{BASE}/erasures/{body['id']}"
    assert (body["contact_id"], body["status"], body["completed_at"], body["services"]) == (ann, "erasing", None, [])
    assert body["erased"] == {**{step.table: 0 for step in STEPS}, "contacts": 1, "interactions": 1,
                              "consent_changes": 1, "feedback": 1, "timeline_entries": on_timeline,
                              "contact_leads": 1}
    assert on_timeline >= 2, "the lead's entry and the interaction's at least"
    assert [c.email for c in store.contacts()] == ["bob@example.com"]
    for model in (Interaction, ConsentChange):
        assert _count(runtime, model, model.contact_id == cid) == 0
    assert _count(runtime, TimelineEntry, (TimelineEntry.contact_id == cid) | (TimelineEntry.lead_id == lead_id)) == 0
    assert _count(runtime, ContactLead, ContactLead.contact_id == cid) == 0
    with runtime.session_factory() as s:
        [(score, comment)] = s.execute(select(Feedback.score, Feedback.comment).where(Feedback.contact_id == cid))
    assert (score, comment) == (9, None), "the score stays for the statistics, the words go"
    # Bob is untouched.
    assert _count(runtime, Interaction, Interaction.contact_id == uuid.UUID(bob)) == 1
    [event] = store.events("crm.contact.erased")
    assert event["subject"] == ann
    assert event["data"] == {"erasure_id": body["id"], "contact_id": ann, "email": EMAIL, "lead_ids": [str(lead_id)],
                             "merged_ids": []}


def test_erasing_again_returns_the_same_erasure_without_a_second_event(client, store):
    ann = _person(client)
    first = _erase(client, ann)
    again = _erase(client, ann)
    assert again.status_code == 202
    assert again.json == first.json and again.headers["Location"] == first.headers["Location"]
    assert len(store.events("crm.contact.erased")) == 1


def test_an_erased_id_answers_410_naming_the_erasure(client):
    ann = _person(client)
    erasure_id = _erase(client, ann).json["id"]
    for r in (client.get(f"{BASE}/{ann}", headers=RW),
              client.patch(f"{BASE}/{ann}", json={"first_name": "X"}, headers=RW),
              client.post(f"{BASE}/{ann}/interactions", json={"type": "note", "summary": "x"}, headers=RW)):
        assert r.status_code == 410, r.get_data(as_text=True)
        assert r.mimetype == "application/problem+json"
        assert r.json["erasure_id"] == erasure_id and r.json["erasure"] == f"{BASE}/erasures/{erasure_id}"


def test_erasure_needs_its_own_scope_which_contacts_star_does_not_grant(client):
    ann = _person(client)
    for headers in (identity_headers("contacts:*"), RW, identity_headers("contacts:read", "contacts:merge")):
        assert _erase(client, ann, headers).status_code == 403
    erasure_id = _erase(client, ann).json["id"]
    assert client.get(f"{BASE}/erasures/{erasure_id}", headers=identity_headers("contacts:*")).status_code == 403
    assert client.get(f"{BASE}/erasures/{erasure_id}", headers=identity_headers("admin")).status_code == 200
    assert client.get(f"{BASE}/{ann}", headers=RW).status_code == 410


def test_unknown_contacts_and_erasures_are_404(client):
    assert _erase(client, uuid.uuid4()).status_code == 404
    r = client.get(f"{BASE}/erasures/{uuid.uuid4()}", headers=ERASER)
    assert r.status_code == 404 and r.mimetype == "application/problem+json"


def test_an_erasure_under_an_idempotency_key_replays(client, store):
    ann = _person(client)
    first = client.post(f"{BASE}/{ann}/erasure", headers={**ERASER, "Idempotency-Key": "erase-ann"})
    replay = client.post(f"{BASE}/{ann}/erasure", headers={**ERASER, "Idempotency-Key": "erase-ann"})
    assert replay.status_code == 202 and replay.json == first.json
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert len(store.events("crm.contact.erased")) == 1


# -- the worker's part --------------------------------------------------------------------------------------

def _dispatcher(runtime):
    bindings = SUITE.bindings()
    return InboxDispatcher(lambda **kw: runtime.uow(**kw), InboxEntry, with_confirmers(handlers.HANDLERS, bindings))


def _outbox_payloads(runtime) -> list[str]:
    with runtime.session_factory() as s:
        return list(s.scalars(select(OutboxMessage.payload).order_by(OutboxMessage.seq)))


def _confirmed(erasure: dict, service: str):
    return make_event("crm.erasure.completed", {"erasure_id": erasure["id"], "contact_id": erasure["contact_id"],
                                                "service": service}, source=f"/services/{service}")


def test_the_worker_purges_the_messages_naming_the_person_and_completes_once_every_service_confirmed(
        client, runtime, store):
    ann = _person(client, key="create-ann", **NAME)
    # Another person whose address contains Ann's: its messages must stay.
    bob = _person(client, email="x" + EMAIL, key="create-bob")
    _publish_all(runtime)
    erasure = _erase(client, ann).json
    _publish_all(runtime)
    [erased_event] = [parse_event(row) for row in _outbox_payloads(runtime) if '"crm.contact.erased"' in row]
    dispatcher = _dispatcher(runtime)

    assert dispatcher.dispatch_batch([erased_event]) == [True]

    payloads = _outbox_payloads(runtime)
    assert not [p for p in payloads if ann in p and '"crm.contact.erased"' not in p]
    assert [p for p in payloads if bob in p], "another person's messages stay"
    assert [p for p in payloads if json.loads(p)["type"] == "crm.contact.erased"], "kept until every service confirmed"
    with runtime.session_factory() as s:
        keys = set(s.scalars(select(IdempotencyRecord.key)))
    assert keys == {"create-bob"}
    shown = client.get(f"{BASE}/erasures/{erasure['id']}", headers=ERASER).json
    expected = sorted(name for name, types in SUITE.bindings().items() if "crm.contact.erased" in types)
    assert shown["status"] == "erasing"
    assert [s["service"] for s in shown["services"]] == expected
    assert {s["service"] for s in shown["services"] if s["confirmed_at"]} == {"contacts"}

    others = [name for name in expected if name != "contacts"]
    assert dispatcher.dispatch_batch([_confirmed(erasure, name) for name in others[:-1]])
    assert client.get(f"{BASE}/erasures/{erasure['id']}", headers=ERASER).json["status"] == "erasing"
    last = _confirmed(erasure, others[-1])
    assert dispatcher.dispatch_batch([last]) == [True]
    assert dispatcher.dispatch_batch([last]) == [False], "a redelivery is absorbed"

    shown = client.get(f"{BASE}/erasures/{erasure['id']}", headers=ERASER).json
    assert shown["status"] == "completed" and shown["completed_at"]
    assert all(s["confirmed_at"] for s in shown["services"])
    assert not [p for p in _outbox_payloads(runtime) if json.dumps(EMAIL) in p], "the erasure event (and its e-mail) went"
    assert _count(runtime, ErasureConfirmation) == len(expected)


def test_a_write_that_raced_the_request_is_erased_by_the_worker(client, runtime):
    ann = _person(client)
    erasure = _erase(client, ann).json
    _publish_all(runtime)
    with runtime.session_factory() as s, s.begin():
        # As if an interaction had committed just after the erasure (its contact lock came first).
        s.add(Interaction(contact_id=uuid.UUID(ann), type="note", occurred_at=utcnow(), summary="late", recorded_by="k"))
        row = s.scalar(select(OutboxMessage.payload).where(OutboxMessage.event_type == "crm.contact.erased"))
    assert _dispatcher(runtime).dispatch_batch([parse_event(row)]) == [True]
    assert _count(runtime, Interaction, Interaction.contact_id == uuid.UUID(ann)) == 0
    with runtime.session_factory() as s:
        assert s.scalar(select(Erasure.status).where(Erasure.id == uuid.UUID(erasure["id"]))) == "erasing"


def test_rows_sent_before_the_erasure_event_go_though_the_relay_has_not_marked_them_yet(client, runtime):
    ann = _person(client)
    bob = _person(client, email="bob@example.com")
    _erase(client, ann)
    with runtime.session_factory() as s:
        row = s.scalar(select(OutboxMessage.payload).where(OutboxMessage.event_type == "crm.contact.erased"))
    assert _dispatcher(runtime).dispatch_batch([parse_event(row)]) == [True]
    payloads = _outbox_payloads(runtime)
    assert [json.loads(p)["type"] for p in payloads if ann in p] == ["crm.contact.erased"]
    assert [p for p in payloads if bob in p]


def test_erasing_a_survivor_erases_the_people_merged_into_it_under_their_old_ids_too(client, runtime):
    ann = _person(client)
    old = _person(client, email="ann.old@example.com")
    older = _person(client, email="ann.older@example.com")
    merger = identity_headers("contacts:read", "contacts:merge")
    for survivor, merged in ((old, older), (ann, old)):
        r = client.post(f"{BASE}/merges", json={"survivor_id": survivor, "merged_id": merged}, headers=merger)
        assert r.status_code == 200, r.get_data(as_text=True)
    _publish_all(runtime)
    _erase(client, ann)
    with runtime.session_factory() as s:
        row = s.scalar(select(OutboxMessage.payload).where(OutboxMessage.event_type == "crm.contact.erased"))
    erased = parse_event(row)
    assert sorted(map(str, erased.data["merged_ids"])) == sorted([old, older])

    assert _dispatcher(runtime).dispatch_batch([erased]) == [True]
    payloads = [p for p in _outbox_payloads(runtime) if json.loads(p)["type"] != "crm.contact.erased"]
    assert not [p for p in payloads if "ann.old" in p or "ann.older" in p or old in p or older in p]
    assert client.get(f"{BASE}/{old}", headers=RW).status_code in (301, 410)
