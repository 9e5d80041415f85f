"""The measures in SQL: one statement per pass over one refresh's customer_analytics rows (docs/analytics.md).

The base pass reads the fact tables once each (purchases, returns, interactions, every one grouped by contact
and joined to `contacts`) and inserts one row per contact; every measure pass then reads this refresh's rows
once and updates its own columns from a window over them (`UPDATE ... FROM (SELECT ... OVER ...)`, which
SQLite has had since 3.33). The statements are SQLAlchemy Core, so the same pass runs on PostgreSQL and
SQLite; what the two write differently (money as integer units, seconds between timestamps, rounding half to
even) is in ../dialects.py.

Shares (ABC cut points, pyramid bands) are compared as exact integer ratios (Decimal.as_integer_ratio), never
as floats: `before < share x total` is `before x den < num x total`, and `rank <= ceil(share x n)` is
`(rank - 1) x den < num x n`, so a cut falls on the same customer on both databases and in the hand-checked test.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import and_, case, func, insert, literal, select, text, update
from sqlalchemy.orm import aliased

from services.common.db import is_postgres

from ..dialects import money_units_sum, round_half_even, seconds_between
from ..models import Contact, ContactPurchase, ContactReturn, CustomerAnalytics, Interaction
from .params import MEDIAN, Parameters
from .snapshots import to_units

DAY_SECONDS = 86400
YEAR_DAYS = 365
CA = CustomerAnalytics


def window_start(as_of: datetime, params: Parameters) -> datetime:
    """The first instant of the refresh's window [as_of - window_days, as_of)."""
    return as_of - timedelta(days=params.window_days)


def lapsed_before(as_of: datetime, params: Parameters) -> datetime:
    """A customer whose last purchase (any currency) is before this instant has lapsed."""
    return as_of - timedelta(days=params.lapsed_after_days)


def _ratio(share: Decimal) -> tuple[int, int]:
    return share.as_integer_ratio()


def _z(column):
    return func.coalesce(column, 0)


# -- base ------------------------------------------------------------------------------------------------------

def base(session, refresh, params: Parameters) -> int:
    """Insert one row per contact with its window and lifetime figures; the number of rows."""
    as_of, start, currency = refresh.as_of, window_start(refresh.as_of, params), refresh.currency
    year_ago, two_years_ago = as_of - timedelta(days=YEAR_DAYS), as_of - timedelta(days=2 * YEAR_DAYS)

    p = ContactPurchase
    mine = p.currency == currency
    in_window = and_(mine, p.occurred_at >= start)
    purchases = (
        select(p.contact_id,
               func.count().filter(in_window).label("n_window"),
               money_units_sum(p.amount, in_window).label("revenue_window"),
               money_units_sum(p.margin, in_window).label("margin_window"),
               func.count().filter(mine).label("n_total"),
               money_units_sum(p.amount, mine).label("revenue_total"),
               money_units_sum(p.margin, mine).label("margin_total"),
               func.min(p.occurred_at).filter(mine).label("first_at"),
               func.max(p.occurred_at).filter(mine).label("last_at"),
               func.count().label("n_any"),
               func.max(p.occurred_at).label("last_any_at"),
               func.count().filter(and_(mine, p.occurred_at >= two_years_ago, p.occurred_at < year_ago))
               .label("n_year_before"),
               func.count().filter(and_(mine, p.occurred_at >= year_ago)).label("n_last_year"))
        .where(p.occurred_at < as_of).group_by(p.contact_id).subquery("p"))

    r = ContactReturn
    returned_in_window = r.occurred_at >= start
    returns = (
        select(r.contact_id,
               money_units_sum(r.amount, returned_in_window).label("revenue_window"),
               money_units_sum(r.margin, returned_in_window).label("margin_window"),
               money_units_sum(r.amount).label("revenue_total"),
               money_units_sum(r.margin).label("margin_total"))
        .where(r.currency == currency, r.occurred_at < as_of).group_by(r.contact_id).subquery("r"))

    i = Interaction
    costs = [(i.type == kind, to_units(cost)) for kind, cost in sorted(params.interaction_costs.items()) if cost]
    cost = case(*costs, else_=0) if costs else literal(0)
    interactions = (
        select(i.contact_id,
               func.sum(cost).filter(i.occurred_at >= start).label("cost_window"),
               func.sum(cost).label("cost_total"))
        .where(i.occurred_at < as_of).group_by(i.contact_id).subquery("i"))

    c = Contact
    values = {
        "refresh_id": literal(refresh.id, CA.refresh_id.type),
        "contact_id": c.id,
        "purchases_window": _z(purchases.c.n_window),
        "revenue_window_units": _z(purchases.c.revenue_window) - _z(returns.c.revenue_window),
        "margin_window_units": _z(purchases.c.margin_window) - _z(returns.c.margin_window),
        "cost_window_units": _z(interactions.c.cost_window),
        "purchase_count": _z(purchases.c.n_total),
        "revenue_total_units": _z(purchases.c.revenue_total) - _z(returns.c.revenue_total),
        "margin_total_units": _z(purchases.c.margin_total) - _z(returns.c.margin_total),
        "cost_total_units": _z(interactions.c.cost_total),
        "first_purchase_at": purchases.c.first_at,
        "last_purchase_at": purchases.c.last_at,
        "purchases_all_currencies": _z(purchases.c.n_any),
        "last_purchase_any_at": purchases.c.last_any_at,
        "purchases_year_before": _z(purchases.c.n_year_before),
        "purchases_last_year": _z(purchases.c.n_last_year),
    }
    rows = (select(*values.values()).select_from(c)
            .outerjoin(purchases, purchases.c.contact_id == c.id)
            .outerjoin(returns, returns.c.contact_id == c.id)
            .outerjoin(interactions, interactions.c.contact_id == c.id)
            .order_by(c.id))  # the primary key's order: its index grows at one end instead of everywhere
    # preserve_rowcount: psycopg's dialect does not keep an INSERT's row count unless asked
    result = session.execute(insert(CA).from_select(list(values), rows).execution_options(preserve_rowcount=True))
    _analyze(session)
    return result.rowcount


def _analyze(session) -> None:
    """Fresh statistics of customer_analytics (PostgreSQL), after the base pass and again after the last one.

    The passes join and rank the rows the base pass has just written, and the steps after them (stages,
    segments, the summaries) and every reader filter on the measures' columns: planned with statistics from
    before the rows existed, or from when those columns were all NULL, a statement over a million rows is
    planned for a handful (nested loops of index probes).
    """
    if is_postgres(session):
        session.execute(text(f"ANALYZE {CA.__tablename__}"))


# -- the measure passes ----------------------------------------------------------------------------------------

def _update_from(refresh, ranked, **values):
    """UPDATE this refresh's rows from `ranked` (a subquery with contact_id) joined by contact."""
    return (update(CA).where(CA.refresh_id == refresh.id, CA.contact_id == ranked.c.contact_id)
            .values(**values).execution_options(synchronize_session=False))


def abc(session, refresh, params: Parameters) -> None:
    """ABC classes by window revenue: A while the revenue before a customer is under a_share of the total."""
    t = aliased(CA)
    order = (t.revenue_window_units.desc(), t.contact_id)
    ranked = (select(t.contact_id, t.revenue_window_units.label("revenue"),
                     func.row_number().over(order_by=order).label("rank"),
                     func.sum(t.revenue_window_units).over(order_by=order, rows=(None, 0)).label("cumulative"),
                     func.sum(t.revenue_window_units).over().label("total"))
              .where(t.refresh_id == refresh.id, t.revenue_window_units > 0).subquery("ranked"))
    before = ranked.c.cumulative - ranked.c.revenue
    (a_num, a_den), (b_num, b_den) = _ratio(params.abc_a_share), _ratio(params.abc_b_share)
    session.execute(_update_from(
        refresh, ranked, abc_rank=ranked.c.rank, abc_cumulative_units=ranked.c.cumulative,
        abc_class=case((before * a_den < a_num * ranked.c.total, "A"),
                       (before * b_den < b_num * ranked.c.total, "B"), else_="C")))


def rfm(session, refresh, params: Parameters) -> None:
    """Recency, frequency and monetary quintiles over the window's buyers, and the RFM segment they map to."""
    t = aliased(CA)

    def quintile(column):
        return func.ntile(5).over(order_by=(column.asc(), t.contact_id))

    ranked = (select(t.contact_id, quintile(t.last_purchase_at).label("r"), quintile(t.purchases_window).label("f"),
                     quintile(t.revenue_window_units).label("m"))
              .where(t.refresh_id == refresh.id, t.purchases_window >= 1).subquery("ranked"))
    r, f, m = ranked.c.r, ranked.c.f, ranked.c.m
    segment = case((and_(r >= 4, f >= 4, m >= 4), "champions"), (and_(r >= 3, f >= 4), "loyal"),
                   (and_(r >= 4, f == 1), "new"), (r >= 4, "potential"), (and_(r <= 2, f >= 3), "at_risk"),
                   (r <= 2, "hibernating"), else_="needs_attention")
    session.execute(_update_from(refresh, ranked, recency_score=r, frequency_score=f, monetary_score=m,
                                 rfm_segment=segment))


def retention(session, refresh, params: Parameters) -> Decimal:
    """The snapshot's retention r: of the year-before-last's buyers, the share who bought in the last year (capped)."""
    before = CA.purchases_year_before > 0
    buyers, kept = session.execute(
        select(func.count().filter(before), func.count().filter(and_(before, CA.purchases_last_year > 0)))
        .where(CA.refresh_id == refresh.id)).one()
    rate = Decimal(kept) / Decimal(buyers) if buyers else params.default_retention
    return min(rate, params.max_retention)


def clv(session, refresh, params: Parameters) -> None:
    """Predicted margin (annual margin x r / (1 + d - r); 0 once lapsed) and CLV = margin + predicted - cost."""
    r = retention(session, refresh, params)
    # annual margin x r / (1 + d - r) = margin x (year seconds / tenure seconds) x r / (1 + d - r)
    factor = Decimal(YEAR_DAYS * DAY_SECONDS) * r / (1 + params.discount_rate - r)
    shortest = params.min_tenure_days * DAY_SECONDS
    lived = seconds_between(literal(refresh.as_of, CA.first_purchase_at.type), CA.first_purchase_at)
    tenure = case((lived > shortest, lived), else_=shortest)
    predicted = case((CA.last_purchase_any_at < lapsed_before(refresh.as_of, params), 0),
                     else_=round_half_even(CA.margin_total_units * literal(factor) / tenure))
    session.execute(update(CA).where(CA.refresh_id == refresh.id, CA.purchase_count >= 1)
                    .values(predicted_margin_units=predicted,
                            clv_units=CA.margin_total_units + predicted - CA.cost_total_units)
                    .execution_options(synchronize_session=False))


def profitability(session, refresh, params: Parameters) -> None:
    """Current profit (window margin - window cost) x future profit (predicted margin): the matrix's quadrant."""
    t = aliased(CA)
    current = (t.margin_window_units - t.cost_window_units).label("current")
    future = t.predicted_margin_units.label("future")
    columns = [t.contact_id, current, future, func.count().over().label("n")]
    for name, expression, threshold in (("current", current, params.current_threshold),
                                        ("future", future, params.future_threshold)):
        if threshold == MEDIAN:
            columns.append(func.row_number().over(order_by=expression.element).label(f"{name}_rank"))
    ranked = select(*columns).where(t.refresh_id == refresh.id, t.purchase_count >= 1).cte("ranked")

    def threshold(name: str, value):
        if value != MEDIAN:
            return literal(to_units(value))
        # The lower median: the value at 0-based position floor((n - 1) / 2), i.e. the 1-based rank k with
        # 2k - 1 <= n <= 2k (integers only, so no division rounds differently on the two databases).
        k = ranked.c[f"{name}_rank"]
        return (select(func.max(case((and_(2 * k - 1 <= ranked.c.n, ranked.c.n <= 2 * k), ranked.c[name]))))
                .scalar_subquery())

    high_current = ranked.c.current > threshold("current", params.current_threshold)
    high_future = ranked.c.future > threshold("future", params.future_threshold)
    quadrant = case((and_(high_current, high_future), "best"), (high_future, "invest"), (high_current, "hold"),
                    else_="worst")
    session.execute(_update_from(refresh, ranked, current_profit_units=ranked.c.current, quadrant=quadrant)
                    .add_cte(ranked))


def pyramid(session, refresh, params: Parameters) -> None:
    """Pyramid levels: active customers banded by window-revenue rank; inactive; prospects."""
    t = aliased(CA)
    active = t.purchases_window >= 1
    ranked = (select(t.contact_id,
                     func.row_number().over(order_by=(case((active, 0), else_=1), t.revenue_window_units.desc(),
                                                      t.contact_id)).label("rank"),
                     func.sum(case((active, 1), else_=0)).over().label("n"))
              .where(t.refresh_id == refresh.id).subquery("ranked"))
    bands = []
    share = Decimal(0)
    for level, part in (("top", params.pyramid_top_share), ("big", params.pyramid_big_share),
                        ("medium", params.pyramid_medium_share)):
        share += part
        num, den = _ratio(share)
        bands.append(((ranked.c.rank - 1) * den < num * ranked.c.n, level))  # rank <= ceil(share x n)
    level = case((CA.purchase_count == 0, "prospect"), (CA.purchases_window == 0, "inactive"), *bands,
                 else_="small")
    session.execute(_update_from(refresh, ranked, pyramid_level=level))


def lifecycle(session, refresh, params: Parameters) -> None:
    """Lifecycle stages by the rules (purchases in every currency, and recency); the hook comes in stages.py."""
    n = CA.purchases_all_currencies
    stage = case((n == 0, "prospect"), (CA.last_purchase_any_at < lapsed_before(refresh.as_of, params), "lapsed"),
                 (n == 1, "new"), (n >= params.loyal_min_purchases, "loyal"),
                 (n >= params.repeater_min_purchases, "repeater"), else_="general")
    session.execute(update(CA).where(CA.refresh_id == refresh.id).values(stage=stage, stage_source="rules")
                    .execution_options(synchronize_session=False))
    _analyze(session)  # the last pass: what follows reads every measure


PASSES = {"base": base, "abc": abc, "rfm": rfm, "clv": clv, "profitability": profitability, "pyramid": pyramid,
          "lifecycle": lifecycle}
