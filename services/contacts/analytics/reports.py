"""The six analytics reports: the current snapshot of a currency, a measure's summary and its customers by class.

A report is the current snapshot's refresh row (its summary was computed by the refresh, analytics/summaries.py)
and one keyset page of the customers of one class, read in two statements whatever the snapshot's size. The page
is ordered and cut inside the snapshot (by the measure's integer column, ties by contact id), and only its rows
are joined to their contacts: ordering ties by the contact's seq instead made PostgreSQL join every tied row
first (a prospect or inactive class at a million contacts took seconds a page). A
refresh on request (`?refresh=true`) runs in the request only for a contact table small enough to finish while
the caller waits; a larger one is the job's (POST /api/v1/analytics/refreshes).
"""
from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import ColumnElement, func, literal, select, tuple_

from services.common.pagination import MAX_CURSOR, MAX_SEQ
from services.common.problems import Conflict, NotFound, Problem, Unprocessable
from services.common.runtime import Runtime
from services.common.uow import UnitOfWork

from ..models import AnalyticsRefresh, Contact, CustomerAnalytics
from .contact_measures import MONEY, NUMBER, TEXT, TIME
from .params import ABC_CLASSES, PYRAMID_LEVELS, QUADRANTS, RFM_SEGMENTS, STAGES
from .refresh import RefreshRunner
from .snapshots import COMPLETED, current_refresh, money

REFRESHES_PATH = "/api/v1/analytics/refreshes"
_CA = CustomerAnalytics


@dataclass(frozen=True)
class Report:
    """One measure's report: who is in it, its class filter, its order and the values each customer shows."""

    measure: str
    population: ColumnElement  # the snapshot rows the measure describes
    classes: tuple[str, ...]  # the class filter's values (empty: no filter)
    class_arg: str | None  # the query argument that filters by class, e.g. `class` for ABC
    class_column: ColumnElement | None
    sort: str  # the order's name: `sort_column` ascending, or `-name` descending; ties by contact id alike
    sort_column: ColumnElement  # an integer column, never null in the population
    values: Mapping[str, tuple[ColumnElement, str]] = field(default_factory=dict)  # item name -> (column, kind)


REPORTS: dict[str, Report] = {report.measure: report for report in (
    Report("abc", _CA.abc_class.is_not(None), ABC_CLASSES, "class", _CA.abc_class, "abc_rank", _CA.abc_rank,
           dict(abc_class=(_CA.abc_class, TEXT), abc_rank=(_CA.abc_rank, NUMBER),
                   revenue=(_CA.revenue_window_units, MONEY),
                   cumulative_revenue=(_CA.abc_cumulative_units, MONEY))),
    Report("rfm", _CA.rfm_segment.is_not(None), RFM_SEGMENTS, "segment", _CA.rfm_segment, "-revenue",
           _CA.revenue_window_units,
           dict(rfm_segment=(_CA.rfm_segment, TEXT), recency_score=(_CA.recency_score, NUMBER),
                   frequency_score=(_CA.frequency_score, NUMBER), monetary_score=(_CA.monetary_score, NUMBER),
                   last_purchase_at=(_CA.last_purchase_at, TIME), purchases=(_CA.purchases_window, NUMBER),
                   revenue=(_CA.revenue_window_units, MONEY))),
    Report("clv", _CA.clv_units.is_not(None), (), None, None, "-clv", _CA.clv_units,
           dict(clv=(_CA.clv_units, MONEY), predicted_margin=(_CA.predicted_margin_units, MONEY),
                   historical_margin=(_CA.margin_total_units, MONEY), cost_to_serve=(_CA.cost_total_units, MONEY),
                   purchase_count=(_CA.purchase_count, NUMBER), first_purchase_at=(_CA.first_purchase_at, TIME),
                   last_purchase_at=(_CA.last_purchase_at, TIME))),
    Report("profitability", _CA.quadrant.is_not(None), QUADRANTS, "quadrant", _CA.quadrant, "-current_profit",
           _CA.current_profit_units,
           dict(quadrant=(_CA.quadrant, TEXT), current_profit=(_CA.current_profit_units, MONEY),
                   future_profit=(_CA.predicted_margin_units, MONEY), clv=(_CA.clv_units, MONEY))),
    Report("pyramid", _CA.pyramid_level.is_not(None), PYRAMID_LEVELS, "level", _CA.pyramid_level, "-revenue",
           _CA.revenue_window_units,
           dict(pyramid_level=(_CA.pyramid_level, TEXT), purchases=(_CA.purchases_window, NUMBER),
                   revenue=(_CA.revenue_window_units, MONEY))),
    Report("lifecycle", _CA.stage.is_not(None), STAGES, "stage", _CA.stage, "-purchases",
           _CA.purchases_all_currencies,
           dict(stage=(_CA.stage, TEXT), stage_source=(_CA.stage_source, TEXT),
                   purchases=(_CA.purchases_all_currencies, NUMBER),
                   last_purchase_at=(_CA.last_purchase_any_at, TIME))),
)}


def snapshot_view(refresh: AnalyticsRefresh) -> dict:
    """The snapshot a report describes: its refresh, instant, window and parameters."""
    window_days = int(refresh.parameters.get("window_days", 0))
    return {"id": refresh.id, "currency": refresh.currency, "as_of": refresh.as_of,
            "window_start": refresh.as_of - timedelta(days=window_days), "finished_at": refresh.finished_at,
            "customers": refresh.customers, "parameters": refresh.parameters}


def read_report(uow: UnitOfWork, measure: str, *, currency: str, classes: Sequence[str] | None = None,
                limit: int, cursor: str | None) -> dict:
    """The current snapshot of `currency`, the measure's summary and one page of its customers (of `classes`).

    404 problem before the currency's first completed refresh.
    """
    report = REPORTS[measure]
    with uow:
        session = uow.session
        refresh = session.scalar(current_refresh(currency))
        if refresh is None:
            raise NotFound(f"There is no {currency} analytics snapshot yet: start a refresh with POST "
                           f"{REFRESHES_PATH} (or ask with ?refresh=true).", currency=currency)
        rows = session.execute(_page_statement(report, refresh.id, classes, decode_report_cursor(cursor, report.sort),
                                               limit)).all()
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_report_cursor(report.sort, last._sort_key, last.contact_id)
    # A contact erased since the snapshot has no row left to join: its place in the order stays, unshown.
    return {"snapshot": snapshot_view(refresh), "summary": (refresh.summary or {}).get(measure, {}),
            "items": [_item(report, row) for row in rows[:limit] if row.email is not None], "next_cursor": next_cursor}


def _page_statement(report: Report, refresh_id: uuid.UUID, classes: Sequence[str] | None,
                    after: tuple[int, uuid.UUID] | None, limit: int):
    """One page of the report's customers: cut in the snapshot (LIMIT in a subquery), then joined to contacts."""
    key, descending = report.sort_column, report.sort.startswith("-")
    page = select(_CA.contact_id, key.label("_sort_key"),
                  *(column.label(name) for name, (column, _k) in report.values.items()))
    page = page.where(_CA.refresh_id == refresh_id, report.population)
    if classes:
        page = page.where(report.class_column.in_(sorted(set(classes))))
    if after is not None:
        value, contact_id = after
        row = tuple_(key, _CA.contact_id)
        at = tuple_(literal(value, key.type), literal(contact_id, _CA.contact_id.type))
        page = page.where(row < at if descending else row > at)
    order = (key.desc(), _CA.contact_id.desc()) if descending else (key, _CA.contact_id)
    page = page.order_by(*order).limit(limit + 1).subquery("page")
    in_order = ((page.c._sort_key.desc(), page.c.contact_id.desc()) if descending
                else (page.c._sort_key, page.c.contact_id))
    return (select(page, Contact.email, Contact.first_name, Contact.last_name)
            .select_from(page.outerjoin(Contact, Contact.id == page.c.contact_id)).order_by(*in_order))


# A report's cursor: base64 of `r:["<sort>", <sort value>, "<contact id>"]`, the position after that row.
def encode_report_cursor(sort: str, value: int, contact_id: uuid.UUID) -> str:
    """The cursor after the row of `contact_id` whose sort value is `value`, for the report ordered by `sort`."""
    raw = "r:" + json.dumps([sort, int(value), str(contact_id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_report_cursor(cursor: str | None, sort: str) -> tuple[int, uuid.UUID] | None:
    """(sort value, contact id) from a cursor this report issued; anything else is a 422 naming `cursor`."""
    if not cursor:
        return None
    try:
        if len(cursor) > MAX_CURSOR:
            raise ValueError
        kind, body = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii").split(":", 1)
        made_for, value, contact_id = json.loads(body, parse_constant=_refuse, parse_float=_refuse)
        if kind != "r" or made_for != sort or type(value) is not int or not -MAX_SEQ - 1 <= value <= MAX_SEQ:
            raise ValueError
        return value, uuid.UUID(contact_id)
    except (ValueError, TypeError, binascii.Error, UnicodeError, RecursionError, AttributeError):
        raise Unprocessable("The cursor is not one this report returned.",
                            errors={"cursor": ["Invalid cursor."]}) from None


def _refuse(_text):
    raise ValueError


def _item(report: Report, row) -> dict:
    values = row._mapping
    item = {name: values[name] for name in ("contact_id", "email", "first_name", "last_name")}
    for name, (_column, kind) in report.values.items():
        item[name] = money(values[name]) if kind == MONEY else values[name]
    return item


def refresh_now(runtime: Runtime, *, currency: str, requested_by: str) -> AnalyticsRefresh:
    """Run a refresh of `currency` in this request: only when the contacts are at most CRM_ANALYTICS_SYNC_LIMIT.

    A larger table is a 409 problem pointing to the job (POST /api/v1/analytics/refreshes); so is a refresh of
    the currency already running. A refresh that fails is a 500 problem naming its step and error.
    """
    limit = runtime.settings.analytics_sync_limit
    with runtime.uow(read_only=True) as uow:
        contacts = uow.session.scalar(select(func.count()).select_from(Contact))
    if contacts > limit:
        raise Conflict(f"{contacts} contacts are more than a request refreshes ({limit}, CRM_ANALYTICS_SYNC_LIMIT): "
                       f"start a refresh with POST {REFRESHES_PATH} and read the report once it has completed.",
                       refreshes=REFRESHES_PATH, contacts=contacts, sync_limit=limit)
    runner = RefreshRunner(runtime)
    requested = runner.request(currency=currency, parameters=None, as_of=None, trigger="request",
                               requested_by=requested_by)
    refresh = runner.run_here(requested.id)
    if refresh.status != COMPLETED:
        raise Problem(f"The refresh {refresh.id} did not complete: {refresh.error}", status=500,
                      slug="refresh-failed", title="Refresh failed", refresh_id=str(refresh.id))
    return refresh
