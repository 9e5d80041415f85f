"""The analytics summaries: the pure rules (shares, Pareto ranks, medians, quintile totals) and summarize() on SQLite."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

from services.contacts.analytics import summaries
from services.contacts.analytics.params import Parameters
from services.contacts.models import AnalyticsRefresh, CustomerAnalytics

UNIT = 10_000


# -- pure rules -------------------------------------------------------------------------------------------------

def test_money_and_shares_are_exact_text_with_four_places():
    assert [summaries.units_text(units) for units in (0, 5, 12340, -12345, None)] == \
        ["0.0000", "0.0005", "1.2340", "-1.2345", None]
    assert summaries.share(1, 3) == "0.3333" and summaries.share(2, 3) == "0.6667"
    assert summaries.share(1, 8) == "0.1250"
    assert summaries.share(5, 0) is None  # no whole to share


def test_pareto_ranks_take_the_ceiling_of_each_percent_of_the_customers():
    assert summaries.pareto_ranks(3)[:2] == [0, 1]
    assert [summaries.pareto_ranks(3)[k] for k in (33, 34, 66, 67, 100)] == [1, 2, 2, 3, 3]
    assert summaries.pareto_ranks(200)[1::25] == [2, 52, 102, 152]
    assert summaries.pareto_ranks(1) == [0] + [1] * 100


def test_pareto_points_start_at_the_origin_and_end_at_everything():
    points = summaries.pareto_points(2, 1000, {1: 900, 2: 1000})
    assert points[0] == {"customer_share": "0.0000", "revenue_share": "0.0000"}
    assert points[50] == {"customer_share": "0.5000", "revenue_share": "0.9000"}
    assert points[51]["revenue_share"] == points[100]["revenue_share"] == "1.0000"
    assert summaries.pareto_points(0, 0, {}) == []


def test_the_average_rounds_half_even_to_whole_units_and_the_median_is_the_lower_one():
    assert summaries.average_units(5, 2) == 2 and summaries.average_units(7, 2) == 4
    assert summaries.average_units(-5, 2) == -2
    assert summaries.average_units(10, 0) is None
    assert [summaries.lower_median_offset(n) for n in (1, 2, 3, 4, 5)] == [0, 0, 1, 1, 2]
    assert summaries.threshold_units("median", 123) == 123
    assert summaries.threshold_units(Decimal("12.34565"), None) == 123456  # half-even


def test_clv_totals_come_from_the_quintile_bands():
    rows = [(1, 2, -50000, 0, -50000, 0, 10000, 60000), (2, 1, 70000, 70000, 70000, 30000, 50000, 10000)]
    summary = summaries.clv_from_bands(rows, retention=Decimal(2) / 3, discount_rate=Decimal("0.10"))
    assert summary == {
        "customers": 3, "total": "2.0000", "average": "0.6667", "predicted_margin": "3.0000",
        "historical_margin": "6.0000", "cost_to_serve": "7.0000", "retention": "0.6667", "discount_rate": "0.10",
        "bands": [{"band": 1, "customers": 2, "min": "-5.0000", "max": "0.0000", "total": "-5.0000"},
                  {"band": 2, "customers": 1, "min": "7.0000", "max": "7.0000", "total": "7.0000"}]}


def test_rfm_groups_add_up_per_segment_and_per_score():
    summary = summaries.rfm_from_groups([("champions", 5, 5, 4, 2, 300), ("new", 5, 1, 1, 1, 10),
                                         ("champions", 4, 4, 4, 1, 50)])
    assert summary["customers"] == 4
    assert summary["segments"]["champions"] == {"customers": 3, "revenue": "0.0350", "customer_share": "0.7500"}
    assert summary["segments"]["loyal"] == {"customers": 0, "revenue": "0.0000", "customer_share": "0.0000"}
    assert summary["scores"]["recency"] == {"1": 0, "2": 0, "3": 0, "4": 1, "5": 3}
    assert summary["scores"]["monetary"] == {"1": 1, "2": 0, "3": 0, "4": 3, "5": 0}


# -- summarize() on SQLite ----------------------------------------------------------------------------------------

def _snapshot(runtime, rows: list[dict], **parameters) -> tuple[AnalyticsRefresh, Parameters]:
    params = Parameters(**parameters)
    with runtime.session_factory() as s, s.begin():
        refresh = AnalyticsRefresh(id=uuid.uuid4(), status="completed", trigger="cli", currency="EUR",
                                   as_of=datetime(2026, 6, 1, tzinfo=timezone.utc), parameters={},
                                   requested_by="test", summary={}, timings={})
        s.add(refresh)
        s.add_all(CustomerAnalytics(refresh_id=refresh.id, contact_id=uuid.uuid4(), **row) for row in rows)
    return refresh, params


def _summarize(runtime, refresh, params) -> dict:
    with runtime.session_factory() as s:
        return summaries.summarize(s, s.merge(refresh), params)


def test_summarize_on_sqlite_counts_each_measure(runtime):
    rows = [
        dict(revenue_window_units=600 * UNIT, abc_class="A", abc_rank=1, abc_cumulative_units=600 * UNIT,
             recency_score=5, frequency_score=4, monetary_score=5, rfm_segment="champions", clv_units=90 * UNIT,
             predicted_margin_units=40 * UNIT, current_profit_units=30 * UNIT, quadrant="best", pyramid_level="top",
             stage="loyal", stage_source="rules", purchases_year_before=1, purchases_last_year=1),
        dict(revenue_window_units=300 * UNIT, abc_class="A", abc_rank=2, abc_cumulative_units=900 * UNIT,
             recency_score=2, frequency_score=4, monetary_score=3, rfm_segment="at_risk", clv_units=10 * UNIT,
             predicted_margin_units=1 * UNIT, current_profit_units=-2 * UNIT, quadrant="worst", pyramid_level="big",
             stage="repeater", stage_source="vip-plugin", purchases_year_before=2, purchases_last_year=0),
        dict(revenue_window_units=100 * UNIT, abc_class="C", abc_rank=3, abc_cumulative_units=1000 * UNIT,
             recency_score=1, frequency_score=1, monetary_score=1, rfm_segment="hibernating", clv_units=20 * UNIT,
             predicted_margin_units=5 * UNIT, current_profit_units=4 * UNIT, quadrant="hold", pyramid_level="small",
             stage="new", stage_source="rules"),
        dict(pyramid_level="prospect", stage="prospect", stage_source="rules"),
    ]
    refresh, params = _snapshot(runtime, rows, current_threshold=Decimal("3"))
    summary = _summarize(runtime, refresh, params)
    assert summary["abc"]["classes"]["A"] == {"customers": 2, "revenue": "900.0000", "revenue_share": "0.9000",
                                              "customer_share": "0.6667"}
    assert summary["abc"]["pareto"][34]["revenue_share"] == "0.9000"
    assert summary["rfm"]["segments"]["at_risk"]["customers"] == 1
    assert (summary["clv"]["customers"], summary["clv"]["total"], summary["clv"]["average"]) == \
        (3, "120.0000", "40.0000")
    assert summary["clv"]["retention"] == "0.5000"  # one of the two buyers of the year before last came back
    assert [band["min"] for band in summary["clv"]["bands"]] == ["10.0000", "20.0000", "90.0000"]
    # current profit: a fixed threshold of 3; predicted margins 40, 1, 5 -> the lower median is 5.
    assert summary["profitability"]["thresholds"] == {"current": {"rule": "amount", "value": "3.0000"},
                                                      "future": {"rule": "median", "value": "5.0000"}}
    assert summary["profitability"]["quadrants"]["worst"]["current_profit"] == "-2.0000"
    assert summary["pyramid"]["levels"]["small"] == {"customers": 1, "revenue": "100.0000", "revenue_share": "0.1000",
                                                     "customer_share": "0.2500"}
    assert summary["lifecycle"]["stages"]["prospect"] == {"customers": 1, "customer_share": "0.2500"}
    assert summary["lifecycle"]["set_by_plugins"] == 1


def test_summarize_an_empty_snapshot(runtime):
    refresh, params = _snapshot(runtime, [])
    summary = _summarize(runtime, refresh, params)
    assert summary["abc"] == {"customers": 0, "revenue": "0.0000", "pareto": [], "classes": {
        name: {"customers": 0, "revenue": "0.0000", "revenue_share": None, "customer_share": None}
        for name in ("A", "B", "C")}}
    assert summary["clv"]["bands"] == [] and summary["clv"]["average"] is None
    assert summary["clv"]["retention"] == "0.5000"  # nobody bought in the year before last: the default
    assert summary["profitability"]["thresholds"]["current"] == {"rule": "median", "value": None}


# -- the reads on SQLite ----------------------------------------------------------------------------------------

def test_a_report_pages_and_a_contacts_measures_read_alike_on_sqlite(runtime):
    from services.contacts import service
    from services.contacts.analytics.reports import read_report
    from services.contacts.models import Contact

    with runtime.session_factory() as s, s.begin():
        people = [Contact(id=uuid.uuid4(), email=f"p{i}@example.com", email_normalized=f"p{i}@example.com")
                  for i in range(5)]
        s.add_all(people)
    revenue = [300, 100, 100, 100, 0]  # three tie: the contact id decides
    rows = [dict(revenue_window_units=units * UNIT, pyramid_level="top" if units else "prospect", stage="new",
                 clv_units=units * UNIT) for units in revenue]
    refresh, _params = _snapshot(runtime, [])
    with runtime.session_factory() as s, s.begin():
        s.add_all(CustomerAnalytics(refresh_id=refresh.id, contact_id=person.id, **row)
                  for person, row in zip(people, rows))
    tied = sorted((person.id for person in people[1:4]), reverse=True)
    expected = [people[0].id, *tied, people[4].id]
    seen, cursor = [], None
    while True:
        page = read_report(runtime.uow(read_only=True), "pyramid", currency="EUR", limit=2, cursor=cursor)
        seen += [item["contact_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    top = read_report(runtime.uow(read_only=True), "pyramid", currency="EUR", classes=["prospect"], limit=5,
                      cursor=None)
    assert [item["contact_id"] for item in top["items"]] == [people[4].id]
    details = service.get_contact_details(runtime.uow(read_only=True), people[0].id, analytics_currency="EUR")
    assert (details["analytics"]["clv"], details["analytics"]["pyramid_level"]) == (Decimal("300.0000"), "top")
    assert service.get_contact_details(runtime.uow(read_only=True), people[0].id)["analytics"] is None
    listed = service.list_contacts(runtime.uow(read_only=True), limit=10, cursor=None, analytics_currency="EUR",
                                   clv_min=Decimal(100), clv_max=Decimal(100))
    assert sorted(contact.id for contact in listed["items"]) == sorted(tied)
