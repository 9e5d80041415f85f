"""Coupon codes and frozen memberships on the real PostgreSQL: a coupon is kept as written and reaches the contacts'
purchase facts; a terminated customer's memberships are frozen once (purchases earn nothing, redemptions are
refused), later ones are created frozen, and a merge carries the freeze to the survivor."""
from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text

from services.common.catalog import make_event, parse_event
from services.common.consumer import InboxDispatcher
from services.contacts import handlers as contacts_handlers
from services.contacts.models import ContactPurchase
from services.loyalty import freezes, handlers
from services.loyalty.models import FrozenContact, LedgerEntry, Member
from tests.integration.loyalty.support import admin, credit, enrol, events, purchase_body, rw
from tests.support.suite import wait_until

pytestmark = pytest.mark.integration

LOYALTY = "/api/v1/loyalty"
DEFAULT_PROGRAM_ID = "5b0c3f52-8d3e-4a7e-9b61-6c0d1f2a9e01"
TERMINATED_AT = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


def _dispatch(app, module, *sent):
    """Hand events to a service's handlers through its inbox, in one batch, as its worker would."""
    rt = app.extensions["crm.runtime"]
    return InboxDispatcher(lambda **kw: rt.uow(**kw), rt.inbox_model, module.HANDLERS).dispatch_batch(list(sent))


def _terminated(contact_id, reason="Serial complainer: 9 complaints on 10 purchases"):
    return make_event("crm.contact.terminated", {
        "contact_id": contact_id, "recommendation_id": uuid.uuid4(), "decision_id": uuid.uuid4(), "reason": reason,
        "occurred_at": TERMINATED_AT}, source="/services/contacts")


def test_a_coupon_code_is_kept_as_written_and_reaches_the_contacts_purchase_facts(loyalty, client, service_app):
    contact_id = uuid.uuid4()
    body = purchase_body(contact_id, external_id="till-1/7", discount="5.00", coupon_code="  Spring-25 ")
    first = client.post(f"{LOYALTY}/purchases", headers=rw(), json=body)
    assert first.status_code == 201, first.text
    assert (first.json["coupon_code"], first.json["discount"], first.json["frozen"]) == ("Spring-25", "5.00", False)
    # The same receipt again is the same purchase; with another coupon it is a different one.
    assert client.post(f"{LOYALTY}/purchases", headers=rw(), json=body).json == first.json
    other = client.post(f"{LOYALTY}/purchases", headers=rw(), json={**body, "coupon_code": "SPRING-25"})
    assert other.status_code == 409, other.text
    for bad in ("   ", "x" * 65, 25):
        refused = client.post(f"{LOYALTY}/purchases", headers=rw(), json=purchase_body(coupon_code=bad))
        assert refused.status_code == 422 and "coupon_code" in refused.json["errors"], refused.text

    [recorded] = events(loyalty, "crm.purchase.recorded")
    assert recorded["data"]["coupon_code"] == "Spring-25"
    contacts = service_app("contacts")
    _dispatch(contacts, contacts_handlers, parse_event(json.dumps(recorded)))
    with contacts.extensions["crm.runtime"].session_factory() as s:
        fact = s.scalar(select(ContactPurchase).where(ContactPurchase.contact_id == contact_id))
    assert (str(fact.purchase_id), fact.coupon_code) == (first.json["id"], "Spring-25")


def test_a_terminated_customer_is_frozen_once_earns_nothing_and_cannot_redeem(loyalty, client):
    contact_id, bystander, newcomer = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    member = enrol(client, contact_id)
    credit(client, member["id"], 50)
    club = client.post(f"{LOYALTY}/programs", headers=admin(), json={
        "code": "club", "name": "Club", "currency": "EUR", "points_per_unit": "2"}).json
    club_member = client.post(f"{LOYALTY}/members", headers=rw(),
                              json={"contact_id": str(contact_id), "program_id": club["id"]}).json
    other = enrol(client, bystander)

    event = _terminated(contact_id)
    # One batch: two customers (one without any membership yet) and a partner's termination, ignored here.
    partner_ended = make_event("crm.contact.terminated", {**_terminated(newcomer).data, "contact_id": None,
                                                          "partner_id": uuid.uuid4()}, source="/services/contacts")
    _dispatch(loyalty, handlers, event, _terminated(newcomer), partner_ended)
    for member_id in (member["id"], club_member["id"]):
        shown = client.get(f"{LOYALTY}/members/{member_id}", headers=rw()).json
        assert (shown["status"], shown["frozen_at"]) == ("frozen", "2026-03-10T09:00:00+00:00"), shown
        assert shown["frozen_reason"].startswith("Serial complainer")
    assert client.get(f"{LOYALTY}/members/{other['id']}", headers=rw()).json["status"] == "active"
    assert client.get(f"{LOYALTY}/members/{member['id']}", headers=rw()).json["balance"] == 50  # points stay

    # Delivered again, and terminated again by another decision: nothing changes.
    later = make_event("crm.contact.terminated", {**_terminated(contact_id, "again").data,
                                                  "occurred_at": datetime(2026, 4, 1, tzinfo=UTC)},
                       source="/services/contacts")
    _dispatch(loyalty, handlers, event, later)
    shown = client.get(f"{LOYALTY}/members/{member['id']}", headers=rw()).json
    assert (shown["frozen_at"], shown["frozen_reason"]) == ("2026-03-10T09:00:00+00:00",
                                                            "Serial complainer: 9 complaints on 10 purchases")
    with loyalty.extensions["crm.runtime"].session_factory() as s:
        record = s.get(FrozenContact, contact_id)
        assert s.scalar(select(func.count()).select_from(FrozenContact)) == 2
    assert record.decision_id == event.data["decision_id"]

    # A purchase is still recorded (and published) but earns 0 points and says why.
    bought = client.post(f"{LOYALTY}/purchases", headers=rw(), json=purchase_body(contact_id, amount="80.00"))
    assert bought.status_code == 201, bought.text
    assert (bought.json["points"], bought.json["frozen"], bought.json["factors"]) == (0, True, [])
    assert bought.json["balance_after"] == 50
    published = [e["data"] for e in events(loyalty, "crm.purchase.recorded")]
    assert [(d["purchase_id"], d["points"]) for d in published] == [(bought.json["id"], 0)]
    assert events(loyalty, "crm.points.earned") == []
    with loyalty.extensions["crm.runtime"].session_factory() as s:
        earn = s.scalar(select(LedgerEntry).where(LedgerEntry.id == uuid.UUID(bought.json["transaction_id"])))
    assert (earn.points, earn.reason.endswith("(membership frozen: no points)")) == (0, True)
    assert client.post(f"{LOYALTY}/purchases", headers=rw(),
                       json=purchase_body(bystander, amount="80.00")).json["points"] == 80

    refused = client.post(f"{LOYALTY}/members/{member['id']}/redemptions", headers=rw(), json={"points": 10})
    assert refused.status_code == 409 and refused.mimetype == "application/problem+json", refused.text
    assert refused.json["type"].endswith("/membership-frozen") and refused.json["member_id"] == member["id"]
    assert member["id"] in refused.json["detail"]
    assert client.get(f"{LOYALTY}/members/{member['id']}", headers=rw()).json["balance"] == 50

    # A membership a terminated contact gets later is frozen from the start: auto-enrolled on contact.created ...
    _dispatch(loyalty, handlers, make_event("crm.contact.created", {
        "contact_id": newcomer, "email": "new@corp.example"}, source="/services/contacts"))
    [joined] = client.get(f"{LOYALTY}/members", query_string={"contact_id": str(newcomer)}, headers=rw()).json["items"]
    assert (joined["status"], joined["frozen_at"]) == ("frozen", "2026-03-10T09:00:00+00:00"), joined
    # ... or by a purchase in a program that enrols automatically.
    shop = client.post(f"{LOYALTY}/programs", headers=admin(), json={
        "code": "shop", "name": "Shop", "currency": "EUR", "points_per_unit": "1", "auto_enrol": True}).json
    late = client.post(f"{LOYALTY}/purchases", headers=rw(),
                       json=purchase_body(contact_id, amount="10.00", program_id=shop["id"]))
    assert (late.status_code, late.json["points"], late.json["frozen"]) == (201, 0, True), late.text
    joined = client.get(f"{LOYALTY}/members/{late.json['member_id']}", headers=rw()).json
    assert (joined["status"], joined["frozen_at"]) == ("frozen", "2026-03-10T09:00:00+00:00")


def test_a_merge_carries_a_terminated_persons_freeze_to_the_survivor(loyalty, client):
    survivor, merged = uuid.uuid4(), uuid.uuid4()
    kept = enrol(client, survivor)
    enrol(client, merged)
    _dispatch(loyalty, handlers, _terminated(merged))
    _dispatch(loyalty, handlers, make_event("crm.contact.merged", {
        "survivor_id": survivor, "merged_id": merged, "previously_merged_ids": []}, source="/services/contacts"))
    shown = client.get(f"{LOYALTY}/members/{kept['id']}", headers=rw()).json
    assert (shown["status"], shown["frozen_at"]) == ("frozen", "2026-03-10T09:00:00+00:00"), shown
    refused = client.post(f"{LOYALTY}/members/{kept['id']}/redemptions", headers=rw(), json={"points": 1})
    assert refused.status_code == 409 and refused.json["type"].endswith("/membership-frozen")


def _frozen_events(app) -> list[dict]:
    return events(app, "crm.member.frozen")


def test_a_termination_publishes_one_member_frozen_per_membership_and_a_redelivery_none(loyalty, client):
    contact_id = uuid.uuid4()
    member = enrol(client, contact_id)
    club = client.post(f"{LOYALTY}/programs", headers=admin(), json={
        "code": "club", "name": "Club", "currency": "EUR", "points_per_unit": "2"}).json
    club_member = client.post(f"{LOYALTY}/members", headers=rw(),
                              json={"contact_id": str(contact_id), "program_id": club["id"]}).json
    enrol(client)  # a bystander

    event = _terminated(contact_id)
    _dispatch(loyalty, handlers, event)
    published = _frozen_events(loyalty)
    assert sorted((e["subject"], e["data"]["member_id"], e["data"]["program_id"]) for e in published) == sorted(
        (m["id"], m["id"], m["program_id"]) for m in (member, club_member))
    for sent in published:
        assert sent["data"]["contact_id"] == str(contact_id) and sent["causationid"] == str(event.id)
        assert (sent["data"]["frozen_at"], sent["data"]["reason"]) == (
            "2026-03-10T09:00:00+00:00", "Serial complainer: 9 complaints on 10 purchases")

    # Delivered again (the inbox drops it), and again under another event id (another decision): nothing more.
    _dispatch(loyalty, handlers, event)
    _dispatch(loyalty, handlers, _terminated(contact_id, "again"))
    assert len(_frozen_events(loyalty)) == 2

    # A membership the terminated contact gets later is announced frozen once, with its enrolment.
    shop = client.post(f"{LOYALTY}/programs", headers=admin(), json={
        "code": "shop", "name": "Shop", "currency": "EUR", "points_per_unit": "1"}).json
    late = client.post(f"{LOYALTY}/members", headers=rw(),
                       json={"contact_id": str(contact_id), "program_id": shop["id"]})
    assert (late.status_code, late.json["status"], late.json["frozen_at"]) == (
        201, "frozen", "2026-03-10T09:00:00+00:00")
    assert [e["data"]["member_id"] for e in _frozen_events(loyalty)[2:]] == [late.json["id"]]


def test_an_automatic_enrolment_of_a_terminated_contact_is_announced_frozen_with_its_cause(loyalty, client):
    newcomer, other = uuid.uuid4(), uuid.uuid4()
    _dispatch(loyalty, handlers, _terminated(newcomer))
    assert _frozen_events(loyalty) == []  # no membership yet
    created = [make_event("crm.contact.created", {"contact_id": contact_id, "email": f"{n}@corp.example"},
                          source="/services/contacts") for n, contact_id in enumerate((newcomer, other))]
    _dispatch(loyalty, handlers, *created)
    [joined] = client.get(f"{LOYALTY}/members", query_string={"contact_id": str(newcomer)}, headers=rw()).json["items"]
    [sent] = _frozen_events(loyalty)
    assert (sent["data"]["member_id"], sent["causationid"]) == (joined["id"], str(created[0].id))
    assert (joined["status"], joined["frozen_at"]) == ("frozen", sent["data"]["frozen_at"])


def test_a_merge_announces_only_the_survivors_memberships_it_froze(loyalty, client):
    survivor, merged = uuid.uuid4(), uuid.uuid4()
    kept = enrol(client, survivor)
    enrol(client, merged)
    club = client.post(f"{LOYALTY}/programs", headers=admin(), json={
        "code": "club", "name": "Club", "currency": "EUR", "points_per_unit": "2"}).json
    moved = client.post(f"{LOYALTY}/members", headers=rw(),
                        json={"contact_id": str(merged), "program_id": club["id"]}).json
    _dispatch(loyalty, handlers, _terminated(merged))
    assert len(_frozen_events(loyalty)) == 2  # the merged person's two memberships

    merge = make_event("crm.contact.merged", {"survivor_id": survivor, "merged_id": merged,
                                              "previously_merged_ids": []}, source="/services/contacts")
    _dispatch(loyalty, handlers, merge)
    # The survivor's own membership froze now; the club membership moved to it frozen already, announced then.
    [sent] = _frozen_events(loyalty)[2:]
    assert (sent["data"]["member_id"], sent["data"]["contact_id"], sent["causationid"]) == (
        kept["id"], str(survivor), str(merge.id))
    shown = client.get(f"{LOYALTY}/members/{moved['id']}", headers=rw()).json
    assert (shown["contact_id"], shown["status"]) == (str(survivor), "frozen")
    _dispatch(loyalty, handlers, make_event("crm.contact.merged", merge.data, source="/services/contacts"))
    assert len(_frozen_events(loyalty)) == 3


def test_after_a_merge_every_membership_of_the_survivor_shows_the_survivors_termination(loyalty, client):
    # The one answer deriving the state changed: a membership moved from a person terminated at another time used
    # to keep that person's time; the survivor is one person with one termination now.
    survivor, merged = uuid.uuid4(), uuid.uuid4()
    enrol(client, survivor)
    club = client.post(f"{LOYALTY}/programs", headers=admin(), json={
        "code": "club", "name": "Club", "currency": "EUR", "points_per_unit": "2"}).json
    moved = client.post(f"{LOYALTY}/members", headers=rw(),
                        json={"contact_id": str(merged), "program_id": club["id"]}).json
    _dispatch(loyalty, handlers, _terminated(survivor, "own"), make_event("crm.contact.terminated", {
        **_terminated(merged, "theirs").data, "occurred_at": datetime(2026, 5, 1, tzinfo=UTC)},
        source="/services/contacts"))
    _dispatch(loyalty, handlers, make_event("crm.contact.merged", {
        "survivor_id": survivor, "merged_id": merged, "previously_merged_ids": []}, source="/services/contacts"))
    shown = client.get(f"{LOYALTY}/members/{moved['id']}", headers=rw()).json
    assert (shown["status"], shown["frozen_at"], shown["frozen_reason"]) == ("frozen", "2026-03-10T09:00:00+00:00",
                                                                             "own")


def test_a_membership_committed_around_a_freeze_is_frozen_and_announced_once(loyalty, client):
    contact_id = uuid.uuid4()
    runtime = loyalty.extensions["crm.runtime"]
    # A freeze under way in another transaction: it holds the contact's lock and has recorded the contact.
    freezing = runtime.session_factory()
    try:
        freezes.lock_contacts(freezing, [contact_id])
        freezing.add(FrozenContact(contact_id=contact_id, frozen_at=TERMINATED_AT, reason="in flight"))
        freezing.flush()
        with ThreadPoolExecutor(1) as pool:
            enrolment = pool.submit(lambda: loyalty.test_client().post(
                f"{LOYALTY}/members", headers=rw(), json={"contact_id": str(contact_id)}))
            wait_until(lambda: _waiting_for_a_lock(runtime), timeout=30, message="the enrolment waiting")
            freezing.commit()
            joined = enrolment.result(timeout=30)
    finally:
        freezing.close()
    # It saw the committed record: frozen, and announced by the enrolment (the freeze had no membership to announce).
    assert (joined.status_code, joined.json["status"]) == (201, "frozen"), joined.text
    assert [e["data"]["member_id"] for e in _frozen_events(loyalty)] == [joined.json["id"]]


def _waiting_for_a_lock(runtime) -> bool:
    with runtime.engine.connect() as conn:
        return conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND wait_event_type = 'Lock'")) > 0


def test_a_membership_inserted_without_seeing_a_freeze_is_frozen_once_both_commit(loyalty, client):
    # The race the copied columns had (a membership written while its contact was frozen, missed by the freeze's
    # update) cannot leave an active membership now: the state is the contact's record.
    contact_id = uuid.uuid4()
    runtime = loyalty.extensions["crm.runtime"]
    enrolling = runtime.session_factory()
    try:
        member = Member(id=uuid.uuid4(), program_id=uuid.UUID(DEFAULT_PROGRAM_ID), contact_id=contact_id,
                        enrolled_via="api")
        enrolling.add(member)
        enrolling.flush()
        assert freezes.freeze_contacts(runtime.uow(), [_terminated(contact_id).data]) == {"contacts": 1, "members": 0}
        enrolling.commit()
    finally:
        enrolling.close()
    shown = client.get(f"{LOYALTY}/members/{member.id}", headers=rw()).json
    assert (shown["status"], shown["frozen_at"]) == ("frozen", "2026-03-10T09:00:00+00:00")
