"""crm.contact.erased in loyalty on the real PostgreSQL: the ledger's free text goes, every amount stays, the
messages naming the person are purged, the erasure is confirmed once."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select, update

from services.common.catalog import make_event
from services.common.consumer import InboxDispatcher
from services.loyalty import handlers
from services.loyalty.models import IdempotencyRecord, LedgerEntry, OutboxMessage, PurchaseReturn
from tests.integration.loyalty.support import balance, enrol, events, purchase_body, rw

pytestmark = pytest.mark.integration


def _erased(contact_id) -> object:
    return make_event("crm.contact.erased", {"erasure_id": uuid.uuid4(), "contact_id": contact_id,
                                             "email": "ann@example.com", "lead_ids": [uuid.uuid4()]},
                      source="/services/contacts")


def _spend_and_redeem(client, contact_id, *, key: str) -> dict:
    member = enrol(client, contact_id)
    r = client.post("/api/v1/loyalty/purchases", headers=rw(**{"Idempotency-Key": key}),
                    json=purchase_body(contact_id, amount="30.00", external_id=f"r-{key}"))
    assert r.status_code == 201, r.text
    r = client.post(f"/api/v1/loyalty/members/{member['id']}/redemptions", headers=rw(**{"Idempotency-Key": f"{key}-r"}),
                    json={"points": 10, "reason": "Gift for Zyxwvuta Qopmnlkj"})
    assert r.status_code == 201, r.text
    return member


def test_erasing_a_member_keeps_the_points_and_forgets_the_words(loyalty, client):
    ann, bob = uuid.uuid4(), uuid.uuid4()
    member = _spend_and_redeem(client, ann, key="ann")
    other = _spend_and_redeem(client, bob, key="bob")
    runtime = loyalty.extensions["crm.runtime"]
    with runtime.session_factory() as s, s.begin():
        s.execute(update(OutboxMessage).values(published_at=func.now()))
    dispatcher = InboxDispatcher(lambda **kw: runtime.uow(**kw), runtime.inbox_model, handlers.HANDLERS)
    erased = _erased(ann)

    assert dispatcher.dispatch_batch([erased]) == [True]

    assert balance(client, member["id"]) == 20 and balance(client, other["id"]) == 20
    with runtime.session_factory() as s:
        entries = {row.member_id: row for row in s.execute(select(LedgerEntry.member_id, LedgerEntry.reason,
                                                                  LedgerEntry.factors).where(LedgerEntry.kind == "redeem"))}
        earn_factors = dict(s.execute(select(LedgerEntry.member_id, LedgerEntry.factors)
                                      .where(LedgerEntry.kind == "earn")).all())
        keys = set(s.scalars(select(IdempotencyRecord.key)))
        payloads = list(s.scalars(select(OutboxMessage.payload).where(OutboxMessage.published_at.is_not(None))))
    assert entries[uuid.UUID(member["id"])].reason is None
    assert entries[uuid.UUID(other["id"])].reason == "Gift for Zyxwvuta Qopmnlkj"
    assert earn_factors[uuid.UUID(member["id"])] == [] and earn_factors[uuid.UUID(other["id"])]
    assert keys == {"bob", "bob-r"}
    assert not [p for p in payloads if str(ann) in p or member["id"] in p]
    assert [p for p in payloads if str(bob) in p]
    [confirmed] = events(loyalty, "crm.erasure.completed")
    assert confirmed["data"] == {"erasure_id": str(erased.data["erasure_id"]), "contact_id": str(ann),
                                 "service": "loyalty"}
    assert confirmed["causationid"] == str(erased.id)

    assert dispatcher.dispatch_batch([erased]) == [False], "a redelivery is absorbed by the inbox"
    assert len(events(loyalty, "crm.erasure.completed")) == 1


def test_erasing_someone_loyalty_never_knew_still_confirms(loyalty):
    runtime = loyalty.extensions["crm.runtime"]
    dispatcher = InboxDispatcher(lambda **kw: runtime.uow(**kw), runtime.inbox_model, handlers.HANDLERS)
    batch = [_erased(uuid.uuid4()), _erased(uuid.uuid4())]
    assert dispatcher.dispatch_batch(batch) == [True, True]
    assert [e["data"]["erasure_id"] for e in events(loyalty, "crm.erasure.completed")] == \
        [str(e.data["erasure_id"]) for e in batch]


def test_erasing_a_member_forgets_the_reasons_of_their_returns_and_keeps_the_figures(loyalty, client):
    ann, bob = uuid.uuid4(), uuid.uuid4()
    reasons = {}
    for contact_id in (ann, bob):
        r = client.post("/api/v1/loyalty/purchases", headers=rw(), json=purchase_body(contact_id, amount="30.00"))
        assert r.status_code == 201, r.text
        returned = client.post(f"/api/v1/loyalty/purchases/{r.json['id']}/returns", headers=rw(), json={
            "amount": "10", "occurred_at": "2026-03-20T09:00:00Z", "reason": "Too small for Zyxwvuta Qopmnlkj"})
        assert returned.status_code == 201, returned.text
        reasons[contact_id] = uuid.UUID(returned.json["id"])
    runtime = loyalty.extensions["crm.runtime"]
    dispatcher = InboxDispatcher(lambda **kw: runtime.uow(**kw), runtime.inbox_model, handlers.HANDLERS)

    assert dispatcher.dispatch_batch([_erased(ann)]) == [True]

    with runtime.session_factory() as s:
        rows = {row.id: row for row in s.execute(select(PurchaseReturn.id, PurchaseReturn.reason,
                                                        PurchaseReturn.amount, PurchaseReturn.points))}
    assert (rows[reasons[ann]].reason, rows[reasons[ann]].amount, rows[reasons[ann]].points) == (None, 10, 10)
    assert rows[reasons[bob]].reason == "Too small for Zyxwvuta Qopmnlkj"
