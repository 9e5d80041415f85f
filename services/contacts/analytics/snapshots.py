"""What every reader of the analytics shares: the current snapshot of a currency, and money in units.

A snapshot is one completed refresh and its customer_analytics rows. Readers never look the current refresh up
first and then read its rows: `current_refresh_id(currency)` is a scalar subquery, so a report, a contact's
record or a segment stays one statement, and a refresh completing meanwhile cannot split a read in two.
"""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import select
from sqlalchemy.sql.elements import ColumnElement

from ..models import AnalyticsRefresh
from .params import UNITS_PER_UNIT

PENDING, RUNNING, COMPLETED, FAILED, SUPERSEDED = "pending", "running", "completed", "failed", "superseded"
KEEP_COMPLETED = 2  # completed snapshots kept per currency; older ones are superseded and their rows deleted
_FOUR_PLACES = Decimal("0.0001")


def current_refresh_id(currency: str) -> ColumnElement:
    """The id of `currency`'s current snapshot (its newest completed refresh) as a scalar subquery; NULL if none."""
    r = AnalyticsRefresh
    return (select(r.id).where(r.currency == currency, r.status == COMPLETED)
            .order_by(r.seq.desc()).limit(1).scalar_subquery())


def current_refresh(currency: str):
    """A SELECT of `currency`'s current snapshot's refresh row (one row, or none before the first refresh)."""
    r = AnalyticsRefresh
    return select(r).where(r.currency == currency, r.status == COMPLETED).order_by(r.seq.desc()).limit(1)


def money(units: int | None) -> Decimal | None:
    """Units of 1/10,000 as a Decimal amount with 4 places (None stays None)."""
    if units is None:
        return None
    return (Decimal(int(units)) / UNITS_PER_UNIT).quantize(_FOUR_PLACES)


def to_units(amount: Decimal | int | str) -> int:
    """An amount as whole units of 1/10,000, rounded half-even (a threshold, a segment rule's value)."""
    return int((Decimal(amount) * UNITS_PER_UNIT).to_integral_value(rounding=ROUND_HALF_EVEN))
