"""Purchase metrics: the pure rules, the exact money column, and the use case on SQLite (in memory and migrated)."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from services.common.db import make_engine
from crm.registry import SUITE
from services.common.runtime import build_runtime
from services.common.settings import Settings
from services.contacts import purchase_facts, service
from services.contacts.models import (
    Base,
    ContactPurchase,
    ContactPurchaseMetric,
    ContactPurchaseSummary,
    InboxEntry,
    OutboxMessage,
)
from services.contacts.schemas import ContactDetailSchema

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _purchase(contact_id: uuid.UUID, amount: str = "10.00", currency: str = "EUR", occurred_at: datetime = T0,
              purchase_id: uuid.UUID | None = None) -> dict:
    return {"purchase_id": purchase_id or uuid.uuid4(), "member_id": uuid.uuid4(), "contact_id": contact_id,
            "program_id": uuid.uuid4(), "amount": Decimal(amount), "currency": currency, "occurred_at": occurred_at}


# -- pure rules -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["12", "12.5", "0.0001", "999999999999.9999", Decimal("1E+3")])
def test_amounts_with_at_most_four_places_are_kept_exactly(value):
    assert purchase_facts.exact_amount(value) == Decimal(value)


@pytest.mark.parametrize("value", ["0.00001", "1.23456", "NaN", "Infinity"])
def test_amounts_that_cannot_be_kept_exactly_are_refused(value):
    with pytest.raises(ValueError):
        purchase_facts.exact_amount(Decimal(value))


def test_the_span_widens_whatever_order_purchases_arrive_in():
    early, mid, late = T0 - timedelta(days=3), T0, T0 + timedelta(days=5)
    assert purchase_facts.widen_span(None, None, mid) == (mid, mid)
    assert purchase_facts.widen_span(mid, mid, late) == (mid, late)
    assert purchase_facts.widen_span(mid, late, early) == (early, late)
    assert purchase_facts.widen_span(early, late, mid) == (early, late)


def test_no_purchases_show_as_zero_and_empty():
    assert purchase_facts.purchases_view(None, []) == {"count": 0, "first_purchase_at": None, "last_purchase_at": None,
                                                "total_spend": []}


def test_the_detail_schema_shows_amounts_as_four_place_decimal_strings():
    contact_id = uuid.uuid4()
    summary = ContactPurchaseSummary(contact_id=contact_id, purchase_count=3, first_purchase_at=T0,
                                     last_purchase_at=T0 + timedelta(hours=1))
    metrics = [ContactPurchaseMetric(contact_id=contact_id, currency="USD", total=Decimal(7), count=1),
               ContactPurchaseMetric(contact_id=contact_id, currency="EUR", total=Decimal("123.45"), count=2)]
    dumped = ContactDetailSchema(only=("purchases",)).dump({"purchases": purchase_facts.purchases_view(summary, metrics)})
    assert dumped["purchases"] == {
        "count": 3, "first_purchase_at": "2026-03-01T12:00:00+00:00", "last_purchase_at": "2026-03-01T13:00:00+00:00",
        "total_spend": [{"currency": "EUR", "amount": "123.4500", "count": 2, "returned": "0.0000", "net": "123.4500",
                         "margin": "0.0000", "discount": "0.0000"},
                        {"currency": "USD", "amount": "7.0000", "count": 1, "returned": "0.0000", "net": "7.0000",
                         "margin": "0.0000", "discount": "0.0000"}]}


# -- on SQLite --------------------------------------------------------------------------------------------

def _metrics(rt, contact_id) -> dict:
    with rt.session_factory() as s:
        return {m.currency: (m.total, m.count) for m in
                s.scalars(select(ContactPurchaseMetric).where(ContactPurchaseMetric.contact_id == contact_id))}


def test_purchases_add_up_exactly_per_currency_and_a_purchase_counts_once(runtime):
    contact_id = uuid.uuid4()
    repeated = _purchase(contact_id, "0.1000")
    assert purchase_facts.record_purchase(runtime.uow(), repeated) is True
    assert purchase_facts.record_purchase(runtime.uow(), _purchase(contact_id, "0.2")) is True
    assert purchase_facts.record_purchase(runtime.uow(), _purchase(contact_id, "5", "USD")) is True
    assert purchase_facts.record_purchase(runtime.uow(), repeated) is False
    assert _metrics(runtime, contact_id) == {"EUR": (Decimal("0.3000"), 2), "USD": (Decimal("5.0000"), 1)}
    with runtime.session_factory() as s:
        assert s.get(ContactPurchaseSummary, contact_id).purchase_count == 3
        # Stored as a decimal string on SQLite, never as a float.
        assert s.execute(text("SELECT typeof(total), total FROM contact_purchase_metrics WHERE currency = 'EUR'")
                         ).one() == ("text", "0.3000")


def test_a_refused_amount_changes_nothing(runtime):
    contact_id = uuid.uuid4()
    with pytest.raises(ValueError):
        purchase_facts.record_purchase(runtime.uow(), _purchase(contact_id, "1.00001"))
    with runtime.session_factory() as s:
        assert s.scalars(select(ContactPurchase)).all() == []
    assert _metrics(runtime, contact_id) == {}


def test_metrics_recorded_before_the_contact_exists_show_once_it_does(runtime):
    contact = service.create_contact(runtime.uow(), {"email": "ann@example.com"})
    purchase_facts.record_purchase(runtime.uow(), _purchase(contact.id, "12.50", occurred_at=T0))
    purchase_facts.record_purchase(runtime.uow(), _purchase(contact.id, "1", occurred_at=T0 - timedelta(days=1)))
    details = service.get_contact_details(runtime.uow(), contact.id)
    assert (details["id"], details["email"], details["version"]) == (contact.id, "ann@example.com", 1)
    assert details["purchases"] == {"count": 2, "first_purchase_at": T0 - timedelta(days=1), "last_purchase_at": T0,
                                    "total_spend": [{"currency": "EUR", "amount": Decimal("13.5000"), "count": 2,
                                                     "returned": 0, "net": Decimal("13.5"), "margin": 0,
                                                     "discount": 0}]}


def test_the_migration_builds_the_purchase_tables_on_sqlite_as_the_models_declare_them(tmp_path):
    url = f"sqlite:///{tmp_path / 'contacts.db'}"
    SUITE.migrate("contacts", url)
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"contact_purchases", "contact_purchase_summary", "contact_purchase_metrics"} <= tables
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                             "version_table": "alembic_version_contacts"})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()
    rt = build_runtime(Settings(service="contacts", database_url=url), OutboxMessage, InboxEntry)
    try:
        contact_id = uuid.uuid4()
        purchase_facts.record_purchase(rt.uow(), _purchase(contact_id, "99999999999.9999"))
        purchase_facts.record_purchase(rt.uow(), _purchase(contact_id, "0.0001"))
        assert _metrics(rt, contact_id) == {"EUR": (Decimal("100000000000.0000"), 2)}
    finally:
        rt.engine.dispose()
