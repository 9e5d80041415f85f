"""Each measure's summary of one snapshot, stored on its refresh row so a report reads one row.

The runner calls `summarize` as its `summary` step, once every measure's column is filled. Each measure is one
GROUP BY over the refresh's rows (the ABC Pareto curve and the profitability medians one more each), so the
cost is a handful of scans of the snapshot whatever its size. Money leaves here as text with four places
(integer units of 1/10,000 -> "12.3400"), shares as text with four places, so the stored JSON is exact and the
API shows it as it is. Formulas: docs/analytics.md; the shapes: docs/api-analytics.md.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from ..models import AnalyticsRefresh, CustomerAnalytics
from . import measures
from .params import ABC_CLASSES, MEDIAN, PYRAMID_LEVELS, QUADRANTS, RFM_SEGMENTS, STAGES, Parameters
from .snapshots import money, to_units

SHARE_PLACES = Decimal("0.0001")
SCORES = (1, 2, 3, 4, 5)
BANDS = 5  # CLV quintiles
PARETO_STEPS = 100  # one Pareto point per percent of customers
_CA = CustomerAnalytics


# -- pure rules -----------------------------------------------------------------------------------------------

def units_text(units: int | None) -> str | None:
    """Integer units of 1/10,000 as an exact decimal text with four places (12340 -> "1.2340")."""
    return None if units is None else format(money(units), "f")


def share(part: int | Decimal, whole: int | Decimal) -> str | None:
    """part / whole rounded half-even to four places, as text; None when the whole is zero (no share to give)."""
    if not whole:
        return None
    return format((Decimal(part) / Decimal(whole)).quantize(SHARE_PLACES, rounding=ROUND_HALF_EVEN), "f")


def pareto_ranks(customers: int) -> list[int]:
    """The rank read for each percent k = 0..100 of `customers`: ceil(k * n / 100) (rank 0 is the origin)."""
    return [-(-k * customers // PARETO_STEPS) for k in range(PARETO_STEPS + 1)]


def pareto_points(customers: int, total_units: int, cumulative_by_rank: Mapping[int, int]) -> list[dict]:
    """The Pareto curve: (customer share k %, cumulative revenue share at rank ceil(k n / 100)), (0, 0) first."""
    if customers == 0:
        return []
    points = []
    for k, rank in enumerate(pareto_ranks(customers)):
        cumulative = 0 if rank == 0 else cumulative_by_rank[rank]
        points.append({"customer_share": share(k, PARETO_STEPS), "revenue_share": share(cumulative, total_units)})
    return points


def average_units(total_units: int, customers: int) -> int | None:
    """The mean of `customers` amounts summing to `total_units`, rounded half-even to whole units."""
    if customers == 0:
        return None
    return int((Decimal(total_units) / Decimal(customers)).to_integral_value(rounding=ROUND_HALF_EVEN))


def threshold_units(threshold: Decimal | str, median_units: int | None) -> int | None:
    """A profitability threshold in units: the lower median found for "median", else the amount given."""
    return median_units if threshold == MEDIAN else to_units(threshold)


def lower_median_offset(count: int) -> int:
    """0-based position of the lower median among `count` ascending values."""
    return (count - 1) // 2


# -- the summaries ----------------------------------------------------------------------------------------------

def summarize(session: Session, refresh: AnalyticsRefresh, params: Parameters) -> dict:
    """measure name -> that measure's summary (JSON-ready) for the snapshot of `refresh`."""
    return {
        "abc": abc_summary(session, refresh),
        "rfm": rfm_summary(session, refresh),
        "clv": clv_summary(session, refresh, params),
        "profitability": profitability_summary(session, refresh, params),
        "pyramid": pyramid_summary(session, refresh),
        "lifecycle": lifecycle_summary(session, refresh),
    }


def _of(refresh: AnalyticsRefresh):
    return _CA.refresh_id == refresh.id


def abc_summary(session: Session, refresh: AnalyticsRefresh) -> dict:
    """Customers, revenue and their shares per class; the Pareto curve (two queries)."""
    rows = session.execute(
        select(_CA.abc_class, func.count(), func.coalesce(func.sum(_CA.revenue_window_units), 0))
        .where(_of(refresh), _CA.abc_class.is_not(None)).group_by(_CA.abc_class)).all()
    found = {name: (count, int(revenue)) for name, count, revenue in rows}
    customers = sum(count for count, _ in found.values())
    revenue = sum(units for _, units in found.values())
    cumulative = {}
    if customers:
        ranks = sorted(set(pareto_ranks(customers)) - {0})
        cumulative = dict(session.execute(
            select(_CA.abc_rank, _CA.abc_cumulative_units).where(_of(refresh), _CA.abc_rank.in_(ranks))).all())
    classes = {}
    for name in ABC_CLASSES:
        count, units = found.get(name, (0, 0))
        classes[name] = {"customers": count, "revenue": units_text(units), "revenue_share": share(units, revenue),
                         "customer_share": share(count, customers)}
    return {"customers": customers, "revenue": units_text(revenue), "classes": classes,
            "pareto": pareto_points(customers, revenue, cumulative)}


def rfm_summary(session: Session, refresh: AnalyticsRefresh) -> dict:
    """Customers and revenue per segment; how many customers have each score 1-5 of R, F and M (one query)."""
    rows = session.execute(
        select(_CA.rfm_segment, _CA.recency_score, _CA.frequency_score, _CA.monetary_score, func.count(),
               func.coalesce(func.sum(_CA.revenue_window_units), 0))
        .where(_of(refresh), _CA.rfm_segment.is_not(None))
        .group_by(_CA.rfm_segment, _CA.recency_score, _CA.frequency_score, _CA.monetary_score)).all()
    return rfm_from_groups(rows)


def rfm_from_groups(rows: Iterable) -> dict:
    """The RFM summary from (segment, R, F, M, customers, revenue units) groups."""
    segments = {name: [0, 0] for name in RFM_SEGMENTS}
    scores = {axis: dict.fromkeys(SCORES, 0) for axis in ("recency", "frequency", "monetary")}
    for segment, recency, frequency, monetary, count, revenue in rows:
        segments[segment][0] += count
        segments[segment][1] += int(revenue)
        for axis, score in (("recency", recency), ("frequency", frequency), ("monetary", monetary)):
            scores[axis][score] += count
    customers = sum(count for count, _ in segments.values())
    return {
        "customers": customers,
        "segments": {name: {"customers": count, "revenue": units_text(units),
                            "customer_share": share(count, customers)}
                     for name, (count, units) in segments.items()},
        "scores": {axis: {str(score): count for score, count in counts.items()} for axis, counts in scores.items()},
    }


def clv_summary(session: Session, refresh: AnalyticsRefresh, params: Parameters) -> dict:
    """Customers, total and average CLV, the retention and discount rate used, and the CLV quintiles."""
    band = func.ntile(BANDS).over(order_by=(_CA.clv_units, _CA.contact_id)).label("band")
    ranked = (select(band, _CA.clv_units, _CA.predicted_margin_units, _CA.margin_total_units, _CA.cost_total_units)
              .where(_of(refresh), _CA.clv_units.is_not(None)).subquery())
    rows = session.execute(
        select(ranked.c.band, func.count(), func.min(ranked.c.clv_units), func.max(ranked.c.clv_units),
               func.sum(ranked.c.clv_units), func.sum(ranked.c.predicted_margin_units),
               func.sum(ranked.c.margin_total_units), func.sum(ranked.c.cost_total_units))
        .group_by(ranked.c.band).order_by(ranked.c.band)).all()
    # The r the clv step used, counted again from the snapshot's rows (analytics/measures.py).
    return clv_from_bands(rows, retention=measures.retention(session, refresh, params),
                          discount_rate=Decimal(params.discount_rate))


def clv_from_bands(rows: Iterable, *, retention: Decimal, discount_rate: Decimal) -> dict:
    """The CLV summary from (band, customers, min, max, sum of clv, predicted, historical margin, cost) rows."""
    bands, totals = [], [0, 0, 0, 0, 0]
    for number, count, low, high, clv, predicted, margin, cost in rows:
        bands.append({"band": number, "customers": count, "min": units_text(low), "max": units_text(high),
                      "total": units_text(clv)})
        for index, value in enumerate((count, clv, predicted, margin, cost)):
            totals[index] += int(value or 0)
    customers, clv, predicted, margin, cost = totals
    return {"customers": customers, "total": units_text(clv), "average": units_text(average_units(clv, customers)),
            "predicted_margin": units_text(predicted), "historical_margin": units_text(margin),
            "cost_to_serve": units_text(cost),
            "retention": format(retention.quantize(SHARE_PLACES, rounding=ROUND_HALF_EVEN), "f"),
            "discount_rate": str(discount_rate),
            "bands": bands}


def profitability_summary(session: Session, refresh: AnalyticsRefresh, params: Parameters) -> dict:
    """Customers, current profit and future margin per quadrant, and the thresholds that split them."""
    rows = session.execute(
        select(_CA.quadrant, func.count(), func.coalesce(func.sum(_CA.current_profit_units), 0),
               func.coalesce(func.sum(_CA.predicted_margin_units), 0))
        .where(_of(refresh), _CA.quadrant.is_not(None)).group_by(_CA.quadrant)).all()
    found = {name: (count, int(current), int(future)) for name, count, current, future in rows}
    customers = sum(count for count, _c, _f in found.values())
    medians = _medians(session, refresh, customers, params)
    thresholds = {}
    for axis, threshold in (("current", params.current_threshold), ("future", params.future_threshold)):
        thresholds[axis] = {"rule": MEDIAN if threshold == MEDIAN else "amount",
                            "value": units_text(threshold_units(threshold, medians.get(axis)))}
    quadrants = {}
    for name in QUADRANTS:
        count, current, future = found.get(name, (0, 0, 0))
        quadrants[name] = {"customers": count, "current_profit": units_text(current),
                           "future_profit": units_text(future), "customer_share": share(count, customers)}
    return {"customers": customers, "thresholds": thresholds, "quadrants": quadrants}


def _medians(session: Session, refresh: AnalyticsRefresh, customers: int, params: Parameters) -> dict:
    """The lower medians of current profit and predicted margin over the matrix's population, where asked for."""
    columns = {"current": _CA.current_profit_units, "future": _CA.predicted_margin_units}
    wanted = {axis: columns[axis] for axis, threshold in (("current", params.current_threshold),
                                                          ("future", params.future_threshold))
              if threshold == MEDIAN}
    if not wanted or customers == 0:
        return {}
    offset = lower_median_offset(customers)
    # One statement: each median is the value at the middle position of its own ordering.
    picks = [select(column).where(_of(refresh), _CA.quadrant.is_not(None))
             .order_by(column).offset(offset).limit(1).scalar_subquery().label(axis)
             for axis, column in wanted.items()]
    row = session.execute(select(*picks)).one()
    return {axis: row._mapping[axis] for axis in wanted}


def pyramid_summary(session: Session, refresh: AnalyticsRefresh) -> dict:
    """Customers, window revenue and revenue share per level (one query)."""
    rows = session.execute(
        select(_CA.pyramid_level, func.count(), func.coalesce(func.sum(_CA.revenue_window_units), 0))
        .where(_of(refresh), _CA.pyramid_level.is_not(None)).group_by(_CA.pyramid_level)).all()
    found = {name: (count, int(units)) for name, count, units in rows}
    customers = sum(count for count, _ in found.values())
    revenue = sum(units for _, units in found.values())
    levels = {}
    for name in PYRAMID_LEVELS:
        count, units = found.get(name, (0, 0))
        levels[name] = {"customers": count, "revenue": units_text(units), "revenue_share": share(units, revenue),
                        "customer_share": share(count, customers)}
    return {"customers": customers, "revenue": units_text(revenue), "levels": levels}


def lifecycle_summary(session: Session, refresh: AnalyticsRefresh) -> dict:
    """Customers per stage, and how many stages a plugin set rather than the rules (one query)."""
    by_plugin = case((_CA.stage_source != "rules", 1), else_=0)  # NULL (no source recorded) is not a plugin
    rows = session.execute(
        select(_CA.stage, func.count(), func.coalesce(func.sum(by_plugin), 0))
        .where(_of(refresh), _CA.stage.is_not(None)).group_by(_CA.stage)).all()
    found = {name: (count, int(plugged)) for name, count, plugged in rows}
    customers = sum(count for count, _ in found.values())
    stages = {}
    for name in STAGES:
        count = found.get(name, (0, 0))[0]
        stages[name] = {"customers": count, "customer_share": share(count, customers)}
    return {"customers": customers, "stages": stages,
            "set_by_plugins": sum(plugged for _count, plugged in found.values())}
