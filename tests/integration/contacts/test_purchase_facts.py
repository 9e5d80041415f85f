"""The purchase fact table on the real PostgreSQL: purchases and returns stored once each, in batches, totals exact."""
from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from services.common.catalog import make_event, parse_event
from services.common.consumer import InboxDispatcher
from services.contacts.handlers import HANDLERS
from services.contacts.models import (
    ContactPurchase,
    ContactPurchaseMetric,
    ContactPurchaseSummary,
    ContactReturn,
    InboxEntry,
)
from tests.support.auth import identity_headers
from tests.support.spend import spend_line

pytestmark = pytest.mark.integration

BASE = "/api/v1/contacts"
HEADERS = identity_headers("contacts:read", "contacts:write", "contacts:merge")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
D = Decimal


def _wire(event_type: str, data: dict):
    # What a consumer receives: the wire form, parsed and validated again.
    return parse_event(make_event(event_type, data, source="/services/loyalty").to_json())


def _bought(contact_id, amount="10.00", *, currency="EUR", margin=None, discount=None, purchase_id=None, at=T0):
    return _wire("crm.purchase.recorded", {
        "purchase_id": purchase_id or uuid.uuid4(), "member_id": uuid.uuid4(), "contact_id": contact_id,
        "program_id": uuid.uuid4(), "amount": D(amount), "currency": currency, "occurred_at": at, "points": 10,
        "margin": None if margin is None else D(margin), "discount": None if discount is None else D(discount)})


def _returned(contact_id, purchase_id, amount="1.00", *, currency="EUR", margin=None, return_id=None, points=1,
              at=T0 + timedelta(days=1), reason=None):
    return _wire("crm.purchase.returned", {
        "return_id": return_id or uuid.uuid4(), "purchase_id": purchase_id, "member_id": uuid.uuid4(),
        "contact_id": contact_id, "program_id": uuid.uuid4(), "amount": D(amount), "currency": currency,
        "occurred_at": at, "margin": None if margin is None else D(margin), "points": points, "reason": reason})


@pytest.fixture
def dispatcher(runtime):
    return InboxDispatcher(lambda **kw: runtime.uow(**kw), InboxEntry, HANDLERS)


def _totals(runtime, contact_id) -> dict[str, tuple]:
    with runtime.session_factory() as s:
        rows = s.scalars(select(ContactPurchaseMetric).where(ContactPurchaseMetric.contact_id == contact_id))
        return {m.currency: (m.total, m.count, m.returned, m.margin, m.discount) for m in rows}


def _summary(runtime, contact_id):
    with runtime.session_factory() as s:
        row = s.get(ContactPurchaseSummary, contact_id)
        return (row.purchase_count, row.first_purchase_at, row.last_purchase_at) if row else None


def _count(runtime, model) -> int:
    with runtime.session_factory() as s:
        return s.scalar(select(func.count()).select_from(model))


def _contact(client, email="ann@example.com") -> str:
    response = client.post(BASE, json={"email": email}, headers=HEADERS)
    assert response.status_code == 201, response.json
    return response.json["id"]


def test_purchases_keep_their_margin_and_discount_and_returns_count_net_of_them(dispatcher, runtime, client):
    contact_id = _contact(client)
    cid = uuid.UUID(contact_id)
    bought = _bought(cid, "100.00", margin="30.00", discount="5")
    other = _bought(cid, "20.00")  # no margin known
    assert dispatcher.dispatch_batch([bought, other]) == [True, True]
    returned = _returned(cid, bought.data["purchase_id"], "40.00", margin="12.00")
    assert dispatcher.dispatch(returned) is True

    with runtime.session_factory() as s:
        fact = s.get(ContactPurchase, bought.data["purchase_id"])
        assert (fact.amount, fact.margin, fact.discount, fact.event_id) == (D(100), D(30), D(5), bought.id)
        assert s.get(ContactPurchase, other.data["purchase_id"]).margin is None
        back = s.get(ContactReturn, returned.data["return_id"])
        assert (back.purchase_id, back.contact_id, back.amount, back.margin, back.currency, back.occurred_at,
                back.event_id) == (bought.data["purchase_id"], cid, D(40), D(12), "EUR", T0 + timedelta(days=1),
                                   returned.id)
    assert _totals(runtime, cid) == {"EUR": (D(120), 2, D(40), D(18), D(5))}
    assert _summary(runtime, cid) == (2, T0, T0)  # a return is no purchase: count and times stay
    shown = client.get(f"{BASE}/{contact_id}", headers=HEADERS).json["purchases"]
    assert shown["count"] == 2 and shown["total_spend"] == [spend_line(
        "EUR", "120.0000", 2, returned="40.0000", net="80.0000", margin="18.0000", discount="5.0000")]


def test_a_return_redelivered_or_republished_counts_once(dispatcher, runtime):
    cid, purchase_id, return_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    dispatcher.dispatch(_bought(cid, "10", purchase_id=purchase_id))
    first = _returned(cid, purchase_id, "4", return_id=return_id)
    assert dispatcher.dispatch(first) is True
    assert dispatcher.dispatch(first) is False  # the inbox remembers the event
    republished = _returned(cid, purchase_id, "4", return_id=return_id)
    assert dispatcher.dispatch_batch([republished, _returned(cid, purchase_id, "4", return_id=return_id)]) == [
        True, True]

    assert _totals(runtime, cid) == {"EUR": (D(10), 1, D(4), D(0), D(0))}
    assert _count(runtime, ContactReturn) == 1


def test_a_return_that_arrives_before_its_purchase_still_ends_exact(dispatcher, runtime, client):
    cid, purchase_id = uuid.uuid4(), uuid.uuid4()
    assert dispatcher.dispatch(_returned(cid, purchase_id, "2.5000", margin="1")) is True
    # Only the return so far: nothing bought yet, so the summary has no purchase and no times.
    assert _totals(runtime, cid) == {"EUR": (D(0), 0, D("2.5"), D(-1), D(0))}
    assert _summary(runtime, cid) == (0, None, None)

    assert dispatcher.dispatch(_bought(cid, "10", margin="4", purchase_id=purchase_id)) is True
    assert _totals(runtime, cid) == {"EUR": (D(10), 1, D("2.5"), D(3), D(0))}
    assert _summary(runtime, cid) == (1, T0, T0)


def test_a_batch_of_purchases_and_returns_is_a_handful_of_statements_whatever_its_size(dispatcher, runtime):
    contacts = [uuid.uuid4() for _ in range(10)]
    purchases = [_bought(contacts[i % 10], f"{i + 1}.0001", currency=("EUR", "USD")[i % 2], margin="0.5",
                         discount="0.25", at=T0 + timedelta(hours=i)) for i in range(60)]
    returns = [_returned(p.data["contact_id"], p.data["purchase_id"], "1", currency=p.data["currency"], margin="0.1")
               for p in purchases[:30]]
    # The same purchase again under a new event id in the same batch: stored and counted once.
    again = _bought(contacts[0], "1.0001", purchase_id=purchases[0].data["purchase_id"])
    batch = purchases + returns + [again]
    random.Random(3).shuffle(batch)
    statements: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _executemany):
        statements.append(statement)

    sa_event.listen(runtime.engine, "before_cursor_execute", record)
    try:
        assert dispatcher.dispatch_batch(batch) == [True] * len(batch)
    finally:
        sa_event.remove(runtime.engine, "before_cursor_execute", record)

    assert len(statements) <= 10, statements
    for table in ("contact_purchases", "contact_returns", "contact_purchase_summary", "contact_purchase_metrics"):
        assert len([s for s in statements if f"INSERT INTO {table} " in s]) == 1, table
    assert (_count(runtime, ContactPurchase), _count(runtime, ContactReturn)) == (60, 30)
    expected: dict = {}
    for p in purchases:
        key = (p.data["contact_id"], p.data["currency"])
        total, count, returned, margin, discount = expected.get(key, (D(0), 0, D(0), D(0), D(0)))
        expected[key] = (total + p.data["amount"], count + 1, returned, margin + D("0.5"), discount + D("0.25"))
    for r in returns:
        key = (r.data["contact_id"], r.data["currency"])
        total, count, returned, margin, discount = expected[key]
        expected[key] = (total, count, returned + D(1), margin - D("0.1"), discount)
    for contact_id in contacts:
        assert _totals(runtime, contact_id) == {currency: figures for (c, currency), figures in expected.items()
                                                if c == contact_id}
        times = [p.data["occurred_at"] for p in purchases if p.data["contact_id"] == contact_id]
        assert _summary(runtime, contact_id) == (6, min(times), max(times))


def test_batches_of_one_contacts_purchases_and_returns_on_four_workers_at_once_add_up_exactly(dispatcher, runtime):
    contacts = [uuid.uuid4() for _ in range(3)]
    rng = random.Random(11)
    purchases = [_bought(rng.choice(contacts), f"{rng.randint(1, 10**6)}.{rng.randint(0, 9999):04d}",
                         margin="1", at=T0 + timedelta(minutes=rng.randint(-10**4, 10**4))) for _ in range(120)]
    returns = [_returned(p.data["contact_id"], p.data["purchase_id"], "0.5", margin="0.25") for p in purchases[::2]]
    events = purchases + returns
    rng.shuffle(events)
    barrier = threading.Barrier(4)
    errors, lock = [], threading.Lock()

    def work(share):
        barrier.wait()
        for start in range(0, len(share), 15):
            outcomes = dispatcher.dispatch_batch(share[start:start + 15])
            with lock:
                errors.extend(o for o in outcomes if o is not True)

    threads = [threading.Thread(target=work, args=(events[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    for contact_id in contacts:
        mine = [p for p in purchases if p.data["contact_id"] == contact_id]
        given = [r for r in returns if r.data["contact_id"] == contact_id]
        assert _totals(runtime, contact_id) == {"EUR": (
            sum((p.data["amount"] for p in mine), D(0)), len(mine), D("0.5") * len(given),
            D(len(mine)) - D("0.25") * len(given), D(0))}
        times = [p.data["occurred_at"] for p in mine]
        assert _summary(runtime, contact_id) == (len(mine), min(times), max(times))


def test_an_inexact_return_fails_alone_and_counts_nothing(dispatcher, runtime):
    cid, purchase_id = uuid.uuid4(), uuid.uuid4()
    good = _bought(cid, "10", purchase_id=purchase_id)
    bad = _returned(cid, purchase_id, "1.00001")
    outcomes = dispatcher.dispatch_batch([good, bad])
    assert outcomes[0] is True and isinstance(outcomes[1], ValueError)
    assert _totals(runtime, cid) == {"EUR": (D(10), 1, D(0), D(0), D(0))}
    assert _count(runtime, ContactReturn) == 0


def test_a_return_naming_a_merged_contact_counts_on_the_survivor(dispatcher, runtime, client):
    survivor, merged = _contact(client, "sam@example.com"), _contact(client, "sam.o@example.com")
    purchase_id = uuid.uuid4()
    assert dispatcher.dispatch(_bought(uuid.UUID(merged), "30", purchase_id=purchase_id)) is True
    assert client.post(f"{BASE}/merges", json={"survivor_id": survivor, "merged_id": merged},
                       headers=HEADERS).status_code == 200
    assert dispatcher.dispatch(_returned(uuid.UUID(merged), purchase_id, "10")) is True

    assert _totals(runtime, uuid.UUID(survivor)) == {"EUR": (D(30), 1, D(10), D(0), D(0))}
    assert _totals(runtime, uuid.UUID(merged)) == {}
    with runtime.session_factory() as s:
        assert s.scalar(select(ContactReturn.contact_id)) == uuid.UUID(survivor)


def test_returns_and_the_points_they_take_back_are_on_the_timeline_once_each(dispatcher, client):
    contact_id = _contact(client)
    cid = uuid.UUID(contact_id)
    bought = _bought(cid, "42.50")
    returned = _returned(cid, bought.data["purchase_id"], "10.00", points=10, reason="too small")
    reclaimed = _wire("crm.points.reclaimed", {
        "transaction_id": uuid.uuid4(), "member_id": uuid.uuid4(), "contact_id": cid, "program_id": uuid.uuid4(),
        "points": 10, "balance": 32, "lifetime_points": 32, "purchase_id": bought.data["purchase_id"],
        "return_id": returned.data["return_id"]})
    assert dispatcher.dispatch_batch([bought, returned, reclaimed]) == [True, True, True]
    # Published again under new event ids: still one entry each.
    again = _returned(cid, bought.data["purchase_id"], "10.00", return_id=returned.data["return_id"])
    assert dispatcher.dispatch(again) is True

    items = client.get(f"{BASE}/{contact_id}/timeline", query_string={"kind": ["purchase_returned", "points_reclaimed"]},
                       headers=HEADERS).json["items"]
    by_kind = {item["kind"]: item for item in items}
    assert len(items) == 2
    entry = by_kind["purchase_returned"]
    assert (entry["id"], entry["occurred_at"], entry["source"]) == (
        str(returned.data["return_id"]), "2026-03-02T12:00:00+00:00", "loyalty")
    assert entry["summary"] == "Returned 10.00 EUR, 10 points taken back: too small"
    assert entry["data"]["purchase_id"] == str(bought.data["purchase_id"]) and entry["data"]["amount"] == "10.00"
    assert by_kind["points_reclaimed"]["summary"] == "10 points taken back for a return (balance 32)"
