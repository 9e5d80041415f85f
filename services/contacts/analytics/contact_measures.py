"""A contact's measures outside the reports: the `analytics` block of its record, the contact list's filters and
the export's columns.

All three read the base currency's current snapshot through `current_refresh_id`, a scalar subquery, so the
record stays the one statement it was and a filter is one EXISTS on the snapshot's primary key. Nothing here
imports the refresh machinery: filters.py, service.py and export.py import this module.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from sqlalchemy import ColumnElement, String, and_, bindparam, exists
from sqlalchemy.sql import Join

from ..models import AnalyticsRefresh, CustomerAnalytics
from .params import ABC_CLASSES, PYRAMID_LEVELS, QUADRANTS, RFM_SEGMENTS, STAGES
from .snapshots import current_refresh_id, money, to_units

MONEY, NUMBER, TEXT, TIME = "money", "number", "text", "time"  # how a value is shown
_CA = CustomerAnalytics


# The currency whose snapshot the record and the export show: bound per execution, so the statements are built once.
ANALYTICS_CURRENCY = bindparam("analytics_currency", type_=String())

# The record and the export join the shown row under names of their own, so a list filter's EXISTS over
# customer_analytics (and current_refresh_id's subquery over analytics_refreshes) in the same statement is never
# correlated to the joined tables.
_SHOWN = CustomerAnalytics.__table__.alias("shown_analytics")
_SHOWN_REFRESH = AnalyticsRefresh.__table__.alias("shown_refresh")

# name -> (column, kind); `historical_margin` and `cost_to_serve` are the lifetime figures CLV is made of.
CONTACT_MEASURES: dict[str, tuple[ColumnElement, str]] = {
    "abc_class": (_SHOWN.c.abc_class, TEXT), "recency_score": (_SHOWN.c.recency_score, NUMBER),
    "frequency_score": (_SHOWN.c.frequency_score, NUMBER), "monetary_score": (_SHOWN.c.monetary_score, NUMBER),
    "rfm_segment": (_SHOWN.c.rfm_segment, TEXT), "clv": (_SHOWN.c.clv_units, MONEY),
    "predicted_margin": (_SHOWN.c.predicted_margin_units, MONEY),
    "historical_margin": (_SHOWN.c.margin_total_units, MONEY), "cost_to_serve": (_SHOWN.c.cost_total_units, MONEY),
    "current_profit": (_SHOWN.c.current_profit_units, MONEY), "quadrant": (_SHOWN.c.quadrant, TEXT),
    "pyramid_level": (_SHOWN.c.pyramid_level, TEXT), "stage": (_SHOWN.c.stage, TEXT),
}
_PREFIX = "analytics_"
RECORD_COLUMNS = (_SHOWN.c.refresh_id.label(f"{_PREFIX}snapshot_id"), _SHOWN_REFRESH.c.as_of.label(f"{_PREFIX}as_of"),
                  _SHOWN_REFRESH.c.currency.label(f"{_PREFIX}currency"),
                  *(column.label(_PREFIX + name) for name, (column, _k) in CONTACT_MEASURES.items()))


def with_contact_measures(joined, contact_id: ColumnElement, currency=ANALYTICS_CURRENCY) -> Join:
    """`joined` LEFT JOIN the contact's row of `currency`'s current snapshot and its refresh (for RECORD_COLUMNS)."""
    shown = and_(_SHOWN.c.contact_id == contact_id, _SHOWN.c.refresh_id == current_refresh_id(currency))
    return (joined.outerjoin(_SHOWN, shown)
            .outerjoin(_SHOWN_REFRESH, _SHOWN_REFRESH.c.id == _SHOWN.c.refresh_id))


def contact_measures_view(values: Mapping) -> dict | None:
    """The record's `analytics` block from a row with RECORD_COLUMNS; None when the snapshot does not hold the
    contact (before the first refresh, or a contact created since)."""
    if values[f"{_PREFIX}snapshot_id"] is None:
        return None
    block = {"currency": values[f"{_PREFIX}currency"], "snapshot_id": values[f"{_PREFIX}snapshot_id"],
             "as_of": values[f"{_PREFIX}as_of"]}
    for name, (_column, kind) in CONTACT_MEASURES.items():
        value = values[_PREFIX + name]
        block[name] = money(value) if kind == MONEY else value
    return block


# The list's filters: each repeatable (any of the values), checked against its vocabulary by the query schema.
CLASS_FILTERS = {"abc_class": _CA.abc_class, "rfm_segment": _CA.rfm_segment, "quadrant": _CA.quadrant,
                 "pyramid_level": _CA.pyramid_level, "stage": _CA.stage}
FILTER_VOCABULARY = {"abc_class": ABC_CLASSES, "rfm_segment": RFM_SEGMENTS, "quadrant": QUADRANTS,
                     "pyramid_level": PYRAMID_LEVELS, "stage": STAGES}


def measure_condition(contact_id: ColumnElement, currency, *, classes: Mapping[str, Sequence[str]],
                      clv_min: Decimal | None = None, clv_max: Decimal | None = None) -> ColumnElement | None:
    """EXISTS the contact's row in `currency`'s current snapshot meeting every given filter; None without any."""
    conditions = [CLASS_FILTERS[name].in_(sorted(set(values))) for name, values in classes.items() if values]
    if clv_min is not None:
        conditions.append(_CA.clv_units >= to_units(clv_min))
    if clv_max is not None:
        conditions.append(_CA.clv_units <= to_units(clv_max))
    if not conditions:
        return None
    return exists().where(_CA.refresh_id == current_refresh_id(currency), _CA.contact_id == contact_id, *conditions)

