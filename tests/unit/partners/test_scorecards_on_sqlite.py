"""Deliveries and a scorecard trend on SQLite (in memory): the same figures as on PostgreSQL, exact decimals."""
from __future__ import annotations

import uuid
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from services.common.problems import Conflict
from services.common.runtime import build_runtime
from services.common.settings import Settings
from services.partners import deliveries, scorecards, service
from services.partners.models import Base, Dispute, InboxEntry, OutboxMessage


@pytest.fixture
def runtime():
    rt = build_runtime(Settings(service="partners", database_url="sqlite:///:memory:"), OutboxMessage, InboxEntry)
    Base.metadata.create_all(rt.engine)
    yield rt
    rt.engine.dispose()


def _delivery(reference, promised_on, delivered_on, delivered="10.125", rejected="0.5"):
    return {"order_reference": reference, "promised_on": promised_on, "delivered_on": delivered_on,
            "quantity_ordered": Decimal("12.5"), "quantity_delivered": Decimal(delivered),
            "quantity_rejected": Decimal(rejected), "amount": Decimal("99.99"), "agreed_amount": Decimal("99.99"),
            "currency": "EUR"}


def test_a_trend_on_sqlite_keeps_exact_quantities_and_counts_disputes_by_period(runtime):
    partner = service.create_partner(runtime.uow(), {"name": "Acme", "type": "supplier"})
    deliveries.record_delivery(runtime.uow(), partner.id, _delivery("A", date(2026, 1, 10), date(2026, 1, 9)),
                               recorded_by="k")
    deliveries.record_delivery(runtime.uow(), partner.id, _delivery("B", date(2026, 3, 31), date(2026, 4, 2)),
                               recorded_by="k")
    deliveries.record_delivery(runtime.uow(), partner.id, _delivery("C", date(2026, 4, 1), None, "0", "0"),
                               recorded_by="k")
    with runtime.session_factory() as s:
        s.add(Dispute(id=uuid.uuid4(), partner_id=partner.id, category="delay", amount=Decimal("5.00"),
                      currency="EUR", status="open", opened_by="partner",
                      opened_at=datetime(2026, 3, 31, 23, 0, tzinfo=timezone.utc)))
        s.commit()
    periods = scorecards.trend_periods(first=scorecards.parse_period("2026-Q1"),
                                       last=scorecards.parse_period("2026-Q2"), today=date(2026, 6, 1))
    q1, q2 = scorecards.trend(runtime.uow(), partner.id, periods, plugins=None,
                              weights=scorecards.DEFAULT_WEIGHTS)["items"]
    assert q1["counts"] == {"deliveries": 2, "delivered": 2, "on_time": 1, "disputes": 1, "priced": 2,
                            "within_price": 2, "quantity_ordered": Decimal("25.000"),
                            "quantity_delivered": Decimal("20.250"), "quantity_rejected": Decimal("1.000")}
    assert q1["rates"] == {"on_time_rate": Decimal("0.5000"), "fill_rate": Decimal("0.8100"),
                           "quality_rate": Decimal("0.9506"), "dispute_rate": Decimal("0.5000"),
                           "price_adherence": Decimal("1.0000")}
    assert (q2["counts"]["deliveries"], q2["counts"]["delivered"], q2["rates"]["fill_rate"]) == (1, 0, Decimal("0"))


def test_the_same_order_again_replays_on_sqlite_and_other_values_conflict(runtime):
    partner = service.create_partner(runtime.uow(), {"name": "Acme", "type": "supplier"})
    body = _delivery("A", date(2026, 1, 10), date(2026, 1, 9))
    first, created = deliveries.record_delivery(runtime.uow(), partner.id, body, recorded_by="k")
    again, created_again = deliveries.record_delivery(runtime.uow(), partner.id, body, recorded_by="k")
    assert (created, created_again, again.id) == (True, False, first.id)
    with pytest.raises(Conflict):
        deliveries.record_delivery(runtime.uow(), partner.id, {**body, "amount": Decimal("1")}, recorded_by="k")
