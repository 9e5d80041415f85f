"""Contract periods without I/O, and the renewal run and lists on SQLite (in memory), whose date arithmetic differs."""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from services.common.db import utcnow
from services.common.runtime import build_runtime
from services.common.settings import Settings
from services.partners import periods, renewals, service
from services.partners.models import Base, InboxEntry, OutboxMessage

TERMS = {
    "payment_terms_days": 30, "discount_percent": Decimal("2.5"), "delivery_lead_time_days": 14,
    "minimum_order_volume": Decimal(1000), "currency": "EUR", "effective_from": date(2026, 1, 1),
    "effective_to": date(2026, 12, 31), "auto_renew": True, "notice_period_days": 60,
}


def _terms(start=date(2026, 1, 1), end=date(2026, 12, 31), notice=60):
    return SimpleNamespace(effective_from=start, effective_to=end, notice_period_days=notice)


# -- periods.py ---------------------------------------------------------------------------------------------

def test_the_notice_deadline_is_the_end_less_the_notice_period():
    assert periods.notice_deadline(_terms()) == date(2026, 11, 1)
    assert periods.notice_deadline(_terms(notice=0)) == date(2026, 12, 31)
    assert periods.notice_deadline(_terms(end=None)) is None


@pytest.mark.parametrize(("today", "state"), [
    (date(2026, 10, 31), "active"), (date(2026, 11, 1), "in_notice"), (date(2026, 12, 30), "in_notice"),
    (date(2026, 12, 31), "expired"), (date(2027, 3, 1), "expired"),
])
def test_the_state_follows_the_deadline_and_the_end(today, state):
    assert periods.period_state(_terms(), today) == state
    assert periods.period_state(_terms(end=None), today) == "active"


def test_the_next_period_starts_at_the_old_end_and_is_as_long():
    assert periods.next_period(_terms()) == (date(2026, 12, 31), date(2027, 12, 30))
    assert periods.next_period(_terms(start=date(2026, 1, 31), end=date(2026, 2, 28))) == \
        (date(2026, 2, 28), date(2026, 3, 28))


@pytest.mark.parametrize(("text", "days"), [("1d", 1), ("60d", 60), ("3650d", 3650)])
def test_a_window_is_whole_days(text, days):
    assert periods.parse_window(text) == days


@pytest.mark.parametrize("text", ["", "60", "0d", "3651d", "12w", "3m", "-1d", "1.5d", " 60d", "60D", "99999d"])
def test_anything_else_is_no_window(text):
    with pytest.raises(ValueError):
        periods.parse_window(text)


# -- on SQLite ----------------------------------------------------------------------------------------------

@pytest.fixture
def runtime():
    rt = build_runtime(Settings(service="partners", database_url="sqlite:///:memory:"), OutboxMessage, InboxEntry)
    Base.metadata.create_all(rt.engine)
    yield rt
    rt.engine.dispose()


def _contract(rt, **terms) -> dict:
    partner = service.create_partner(rt.uow(), {"name": "Acme", "type": "supplier"})
    return service.create_contract(rt.uow(), partner.id, {"title": "Supply", "terms": {**TERMS, **terms}}, actor="k1")


def _types(rt) -> list[str]:
    with rt.session_factory() as s:
        return [r.event_type for r in s.scalars(select(OutboxMessage).order_by(OutboxMessage.seq))
                if r.event_type.startswith("crm.contract.") and r.event_type != "crm.contract.created"]


def test_a_run_on_sqlite_announces_renews_and_expires_once(runtime):
    renewing = _contract(runtime)
    ending = _contract(runtime, auto_renew=False, notice_period_days=30)  # deadline 2026-12-01

    assert renewals.run_once(runtime, date(2026, 11, 1)).expiring == 1
    assert renewals.run_once(runtime, date(2026, 12, 1)).expiring == 1
    at_end = renewals.run_once(runtime, date(2026, 12, 31))
    again = renewals.run_once(runtime, date(2026, 12, 31))

    assert (at_end.renewed, at_end.expired, again.renewed, again.expired) == (1, 1, 0, 0)
    assert _types(runtime) == ["crm.contract.expiring", "crm.contract.expiring", "crm.contract.expired",
                               "crm.contract.terms_changed", "crm.contract.renewed"]
    assert service.get_contract(runtime.uow(), renewing["id"])["terms"].effective_to == date(2027, 12, 30)
    assert service.get_contract(runtime.uow(), ending["id"])["current_version"] == 1


def test_the_lists_compute_the_deadline_on_sqlite(runtime):
    today = utcnow().date()
    soon = _contract(runtime, effective_from=today - timedelta(days=300), effective_to=today + timedelta(days=40),
                     notice_period_days=30)
    _contract(runtime, effective_from=today - timedelta(days=300), effective_to=today + timedelta(days=200))

    listed = renewals.list_contracts(runtime.uow(), expiring_within=60, limit=10, cursor=None,
                                     sort="-notice_deadline")
    notices = renewals.list_own_notices(runtime.uow(), soon["partner_id"], within=30, limit=10, cursor=None)

    assert [c["id"] for c in listed["items"]] == [soon["id"]]
    assert listed["items"][0]["notice_deadline"] == today + timedelta(days=10)
    assert [c["id"] for c in notices["items"]] == [soon["id"]]
    assert listed["items"][0]["state"] == "active"
