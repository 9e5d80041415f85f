"""crm.contact.merged in the loyalty service on the real PostgreSQL: memberships follow the person, exactly."""
from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from services.common.catalog import make_event
from services.common.consumer import InboxDispatcher
from services.loyalty import handlers
from services.loyalty.models import LedgerEntry, Member, Purchase
from tests.integration.loyalty.support import admin, purchase_body, rw

pytestmark = pytest.mark.integration

LOYALTY = "/api/v1/loyalty"
DEFAULT_PROGRAM_ID = "5b0c3f52-8d3e-4a7e-9b61-6c0d1f2a9e01"


def _merged(survivor_id, merged_id, previously=()):
    return make_event("crm.contact.merged", {"survivor_id": survivor_id, "merged_id": merged_id,
                                             "previously_merged_ids": list(previously)}, source="/services/contacts")


def _dispatch(app, *events):
    rt = app.extensions["crm.runtime"]
    return InboxDispatcher(lambda **kw: rt.uow(**kw), rt.inbox_model, handlers.HANDLERS).dispatch_batch(list(events))


def _buy(client, contact_id, amount, program_id=None, **extra):
    body = purchase_body(contact_id, amount=amount, **extra)
    if program_id:
        body["program_id"] = program_id
    response = client.post(f"{LOYALTY}/purchases", headers=rw(), json=body)
    assert response.status_code == 201, response.text
    return response.json


def _member_of(client, contact_id, program_id=DEFAULT_PROGRAM_ID) -> dict:
    query = {"contact_id": str(contact_id), "program_id": program_id}
    [member] = client.get(f"{LOYALTY}/members", query_string=query, headers=rw()).json["items"]
    return member


def _ledger(app, member_id) -> list[LedgerEntry]:
    with app.extensions["crm.runtime"].session_factory() as s:
        return list(s.scalars(select(LedgerEntry).where(LedgerEntry.member_id == uuid.UUID(member_id))
                              .order_by(LedgerEntry.seq)))


def _spent(app, member_id) -> tuple[Decimal, int]:
    with app.extensions["crm.runtime"].session_factory() as s:
        total, n = s.execute(select(func.sum(Purchase.amount), func.count())
                             .where(Purchase.member_id == uuid.UUID(member_id))).one()
    return total, n


@pytest.fixture
def people(loyalty, client):
    """A survivor and a merged contact, both members of the default program with points, purchases and a redemption;
    the merged one is also the only member of a second program."""
    survivor, merged = uuid.uuid4(), uuid.uuid4()
    _buy(client, survivor, "100.10")
    _buy(client, merged, "50.05")
    _buy(client, survivor, "20.00")
    _buy(client, merged, "7.77", external_id="receipt-7")
    member = _member_of(client, merged)
    assert client.post(f"{LOYALTY}/members/{member['id']}/redemptions", headers=rw(),
                       json={"points": 10, "reason": "coffee"}).status_code == 201
    other = client.post(f"{LOYALTY}/programs", headers=admin(), json={
        "code": "club", "name": "Club", "currency": "EUR", "points_per_unit": "2", "auto_enrol": True}).json
    _buy(client, merged, "5.00", program_id=other["id"])
    return survivor, merged, other["id"]


def test_two_memberships_in_one_program_are_combined_exactly(loyalty, client, people):
    survivor, merged, other_program = people
    keeper, closed = _member_of(client, survivor), _member_of(client, merged)
    expected_balance = keeper["balance"] + closed["balance"]
    expected_lifetime = keeper["lifetime_points"] + closed["lifetime_points"]
    spent = [_spent(loyalty, m["id"]) for m in (keeper, closed)]

    assert _dispatch(loyalty, _merged(survivor, merged)) == [True]

    after = client.get(f"{LOYALTY}/members/{keeper['id']}", headers=rw()).json
    assert (after["balance"], after["lifetime_points"]) == (expected_balance, expected_lifetime)
    assert _spent(loyalty, keeper["id"]) == (spent[0][0] + spent[1][0], spent[0][1] + spent[1][1])
    gone = client.get(f"{LOYALTY}/members/{closed['id']}", headers=rw()).json
    assert gone["merged_into_id"] == keeper["id"] and gone["balance"] == 0
    assert _spent(loyalty, closed["id"]) == (None, 0)
    # The combined ledger's running balance ends at the balance, and never went below zero.
    ledger = _ledger(loyalty, keeper["id"])
    assert len(ledger) == 5 and ledger[-1].balance_after == expected_balance
    assert all(entry.balance_after >= 0 for entry in ledger)
    # The membership of a program the survivor was not in simply became the survivor's.
    moved = _member_of(client, survivor, other_program)
    assert moved["balance"] == 10 and moved["merged_into_id"] is None
    # The receipt number stays taken in its program: the same receipt again is the same purchase.
    again = client.post(f"{LOYALTY}/purchases", headers=rw(),
                        json=purchase_body(survivor, amount="7.77", external_id="receipt-7"))
    assert again.status_code == 200 and again.json["member_id"] == keeper["id"]


def test_writes_to_a_closed_membership_are_refused_naming_the_one_it_went_into(loyalty, client, people):
    survivor, merged, _other = people
    keeper, closed = _member_of(client, survivor), _member_of(client, merged)
    _dispatch(loyalty, _merged(survivor, merged))
    refused = client.post(f"{LOYALTY}/members/{closed['id']}/redemptions", headers=rw(), json={"points": 1})
    assert refused.status_code == 410 and refused.json["merged_into_id"] == keeper["id"]
    by_contact = client.post(f"{LOYALTY}/purchases", headers=rw(), json=purchase_body(merged, amount="1.00"))
    assert by_contact.status_code == 410 and by_contact.json["merged_into_id"] == keeper["id"]
    ok = client.post(f"{LOYALTY}/members/{keeper['id']}/redemptions", headers=rw(), json={"points": 1})
    assert ok.status_code == 201


def test_a_redelivered_or_republished_merge_changes_nothing(loyalty, client, people):
    survivor, merged, _other = people
    event = _merged(survivor, merged)
    assert _dispatch(loyalty, event) == [True]
    keeper = _member_of(client, survivor)
    ledger = [(e.id, e.balance_after) for e in _ledger(loyalty, keeper["id"])]
    assert _dispatch(loyalty, event) == [False]  # the same event again: the inbox absorbs it
    assert _dispatch(loyalty, _merged(survivor, merged)) == [True]  # published again: nothing left to move
    assert client.get(f"{LOYALTY}/members/{keeper['id']}", headers=rw()).json["balance"] == keeper["balance"]
    assert [(e.id, e.balance_after) for e in _ledger(loyalty, keeper["id"])] == ledger


def test_chained_merges_end_at_the_last_survivor_in_either_order(loyalty, client):
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for contact, amount in ((a, "10.00"), (b, "20.00"), (c, "30.00")):
        _buy(client, contact, amount)
    balances = sum(_member_of(client, contact)["balance"] for contact in (a, b, c))
    # b into c (naming a, merged into b before) is handled before a into b.
    assert _dispatch(loyalty, _merged(c, b, previously=[a]), _merged(b, a)) == [True, True]
    with loyalty.extensions["crm.runtime"].session_factory() as s:
        open_members = list(s.scalars(select(Member).where(Member.merged_into_id.is_(None))))
    assert [m.contact_id for m in open_members] == [c]
    assert _member_of(client, c)["balance"] == balances
