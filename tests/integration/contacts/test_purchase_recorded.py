"""crm.purchase.recorded through the inbox dispatcher on the real PostgreSQL: exact metrics, counted once."""
from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from services.common.catalog import make_event, parse_event
from services.common.consumer import InboxDispatcher
from services.common.db import make_engine
from crm.registry import SUITE
from services.common.migrations import alembic_config
from services.contacts import service
from services.contacts.handlers import HANDLERS
from services.contacts.models import (
    Base,
    ContactPurchase,
    ContactPurchaseMetric,
    ContactPurchaseSummary,
    InboxEntry,
)
from tests.support.spend import spend_line

pytestmark = pytest.mark.integration

BASE = "/api/v1/contacts"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _recorded(contact_id: uuid.UUID, amount: str = "10.00", currency: str = "EUR", occurred_at: datetime = T0,
              purchase_id: uuid.UUID | None = None):
    event = make_event("crm.purchase.recorded", {
        "purchase_id": purchase_id or uuid.uuid4(), "member_id": uuid.uuid4(), "contact_id": contact_id,
        "program_id": uuid.uuid4(), "amount": Decimal(amount), "currency": currency, "occurred_at": occurred_at,
        "external_id": None, "points": 10}, source="/services/loyalty", correlationid="req-p")
    # What a consumer receives: the wire form, parsed and validated again.
    return parse_event(event.to_json())


@pytest.fixture
def dispatcher(runtime):
    return InboxDispatcher(lambda **kw: runtime.uow(**kw), InboxEntry, HANDLERS)


class Metrics:
    def __init__(self, runtime):
        self.runtime = runtime

    def totals(self, contact_id) -> dict[str, tuple[Decimal, int]]:
        with self.runtime.session_factory() as s:
            rows = s.scalars(select(ContactPurchaseMetric).where(ContactPurchaseMetric.contact_id == contact_id))
            return {m.currency: (m.total, m.count) for m in rows}

    def summary(self, contact_id) -> tuple[int, datetime | None, datetime | None]:
        with self.runtime.session_factory() as s:
            row = s.get(ContactPurchaseSummary, contact_id)
            return (row.purchase_count, row.first_purchase_at, row.last_purchase_at) if row else (0, None, None)

    def counted(self) -> int:
        with self.runtime.session_factory() as s:
            return s.scalar(select(func.count()).select_from(ContactPurchase))


@pytest.fixture
def metrics(runtime):
    return Metrics(runtime)


def _create(client, headers, email="ann@example.com") -> dict:
    response = client.post(BASE, json={"email": email}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def test_a_recorded_purchase_updates_its_contacts_metrics(dispatcher, metrics, runtime):
    contact_id = uuid.uuid4()
    event = _recorded(contact_id, "123.45")
    assert dispatcher.dispatch(event) is True
    assert metrics.totals(contact_id) == {"EUR": (Decimal("123.4500"), 1)}
    assert metrics.summary(contact_id) == (1, T0, T0)
    with runtime.session_factory() as s:
        row = s.get(ContactPurchase, event.data["purchase_id"])
        assert (row.contact_id, row.amount, row.currency, row.event_id) == (contact_id, Decimal("123.4500"), "EUR",
                                                                            event.id)


def test_the_same_event_delivered_twice_counts_once(dispatcher, metrics):
    contact_id = uuid.uuid4()
    event = _recorded(contact_id, "5.00")
    assert dispatcher.dispatch(event) is True
    assert dispatcher.dispatch(event) is False  # the inbox remembers it
    assert metrics.totals(contact_id) == {"EUR": (Decimal("5.0000"), 1)}
    assert metrics.summary(contact_id)[0] == 1


def test_the_same_purchase_under_a_new_event_id_counts_once(dispatcher, metrics, runtime):
    contact_id, purchase_id = uuid.uuid4(), uuid.uuid4()
    first, again = _recorded(contact_id, "5.00", purchase_id=purchase_id), \
        _recorded(contact_id, "5.00", purchase_id=purchase_id)
    assert first.id != again.id
    assert dispatcher.dispatch(first) is True
    assert dispatcher.dispatch(again) is True  # a new event for the inbox, but not a new purchase
    assert metrics.totals(contact_id) == {"EUR": (Decimal("5.0000"), 1)}
    assert metrics.summary(contact_id)[0] == 1
    with runtime.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(InboxEntry)) == 2


def test_currencies_are_kept_apart(dispatcher, metrics):
    contact_id = uuid.uuid4()
    for amount, currency in [("10.10", "EUR"), ("0.0001", "USD"), ("20.20", "EUR"), ("3", "GBP")]:
        dispatcher.dispatch(_recorded(contact_id, amount, currency))
    assert metrics.totals(contact_id) == {"EUR": (Decimal("30.3000"), 2), "USD": (Decimal("0.0001"), 1),
                                          "GBP": (Decimal("3.0000"), 1)}
    assert metrics.summary(contact_id)[0] == 4


def test_first_and_last_purchase_hold_whatever_order_the_events_arrive_in(dispatcher, metrics):
    contact_id = uuid.uuid4()
    times = [T0, T0 - timedelta(days=10), T0 + timedelta(days=3), T0 - timedelta(days=2), T0 + timedelta(hours=1)]
    for at in times:
        dispatcher.dispatch(_recorded(contact_id, "1", occurred_at=at))
    assert metrics.summary(contact_id) == (5, T0 - timedelta(days=10), T0 + timedelta(days=3))


def test_purchases_of_one_contact_counted_by_eight_workers_at_once_add_up_exactly(dispatcher, metrics):
    contact_id = uuid.uuid4()
    rng = random.Random(7)
    events = [_recorded(contact_id, f"{rng.randint(1, 10**7)}.{rng.randint(0, 9999):04d}", rng.choice(["EUR", "USD"]),
                        occurred_at=T0 + timedelta(minutes=rng.randint(-10**5, 10**5)))
              for _ in range(200)]
    barrier = threading.Barrier(8)
    errors, lock = [], threading.Lock()

    def work(share):
        barrier.wait()
        for event in share:
            try:
                assert dispatcher.dispatch(event) is True
            except Exception as exc:  # noqa: BLE001 — collected and asserted below
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=work, args=(events[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    expected: dict[str, tuple[Decimal, int]] = {}
    for event in events:
        total, count = expected.get(event.data["currency"], (Decimal(0), 0))
        expected[event.data["currency"]] = (total + event.data["amount"], count + 1)
    assert metrics.totals(contact_id) == expected
    times = [e.data["occurred_at"] for e in events]
    assert metrics.summary(contact_id) == (200, min(times), max(times))


def test_one_purchase_published_under_several_event_ids_at_once_counts_once(dispatcher, metrics):
    contact_id, purchase_id = uuid.uuid4(), uuid.uuid4()
    events = [_recorded(contact_id, "9.99", purchase_id=purchase_id) for _ in range(8)]
    barrier = threading.Barrier(8)
    errors, lock = [], threading.Lock()

    def work(event):
        barrier.wait()
        try:
            dispatcher.dispatch(event)
        except Exception as exc:  # noqa: BLE001 — collected and asserted below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(e,)) for e in events]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert metrics.totals(contact_id) == {"EUR": (Decimal("9.9900"), 1)}
    assert metrics.summary(contact_id)[0] == 1
    assert metrics.counted() == 1


def test_an_amount_finer_than_four_places_fails_and_counts_nothing(dispatcher, metrics, runtime):
    contact_id = uuid.uuid4()
    with pytest.raises(ValueError):
        dispatcher.dispatch(_recorded(contact_id, "1.00005"))
    assert metrics.totals(contact_id) == {}
    assert metrics.counted() == 0
    with runtime.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(InboxEntry)) == 0  # so a retry runs it again


# -- shown on GET /api/v1/contacts/{id} --------------------------------------------------------------------

def test_a_contact_shows_its_purchases(client, rw_headers, dispatcher):
    contact = _create(client, rw_headers)
    contact_id = uuid.UUID(contact["id"])
    dispatcher.dispatch(_recorded(contact_id, "100.05", "EUR", occurred_at=T0))
    dispatcher.dispatch(_recorded(contact_id, "23.40", "EUR", occurred_at=T0 - timedelta(days=1)))
    dispatcher.dispatch(_recorded(contact_id, "7", "USD", occurred_at=T0 + timedelta(days=1)))
    response = client.get(f"{BASE}/{contact_id}", headers=rw_headers)
    assert response.status_code == 200
    assert response.headers["ETag"] == 'W/"1"'
    body = response.json
    assert (body["id"], body["email"], body["version"]) == (contact["id"], "ann@example.com", 1)
    assert body["purchases"] == {
        "count": 3, "first_purchase_at": "2026-02-28T12:00:00+00:00", "last_purchase_at": "2026-03-02T12:00:00+00:00",
        "total_spend": [spend_line("EUR", "123.4500", 2), spend_line("USD", "7.0000", 1)]}


def test_a_contact_without_purchases_shows_zero_and_the_list_stays_as_it_was(client, rw_headers):
    contact = _create(client, rw_headers)
    body = client.get(f"{BASE}/{contact['id']}", headers=rw_headers).json
    assert body["purchases"] == {"count": 0, "first_purchase_at": None, "last_purchase_at": None, "total_spend": []}
    assert set(body) - {"purchases", "analytics"} == set(contact)
    [listed] = client.get(BASE, headers=rw_headers).json["items"]
    assert "purchases" not in listed


def test_a_purchase_that_arrives_before_its_contact_shows_once_the_contact_exists(client, rw_headers, dispatcher,
                                                                                  monkeypatch):
    early_id = uuid.uuid4()
    assert dispatcher.dispatch(_recorded(early_id, "42.00")) is True
    assert client.get(f"{BASE}/{early_id}", headers=rw_headers).status_code == 404
    # The contact is created afterwards and happens to get that id.
    monkeypatch.setattr(service, "new_id", lambda: early_id)
    assert _create(client, rw_headers)["id"] == str(early_id)
    body = client.get(f"{BASE}/{early_id}", headers=rw_headers).json
    assert body["purchases"] == {"count": 1, "first_purchase_at": "2026-03-01T12:00:00+00:00",
                                 "last_purchase_at": "2026-03-01T12:00:00+00:00",
                                 "total_spend": [spend_line("EUR", "42.0000", 1)]}


# -- the migration on PostgreSQL --------------------------------------------------------------------------

def test_the_migration_matches_the_models_on_postgresql_and_downgrades(make_database):
    url = make_database("contacts")
    SUITE.migrate("contacts", url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                             "version_table": "alembic_version_contacts"})
            assert compare_metadata(context, Base.metadata) == []
        command.downgrade(alembic_config("contacts", url, SUITE.migrations_dir("contacts")), "0001")
        with engine.connect() as conn:
            assert "contact_purchases" not in conn.dialect.get_table_names(conn)
        SUITE.migrate("contacts", url)
        with engine.connect() as conn:
            assert {"contact_purchases", "contact_purchase_summary", "contact_purchase_metrics"} <= \
                set(conn.dialect.get_table_names(conn))
    finally:
        engine.dispose()
