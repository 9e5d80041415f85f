"""The six analytics reports on the real PostgreSQL: each summary against figures worked out by hand, paging per
class, 404 before a snapshot, the currency, and ?refresh=true allowed or refused by size and by scope.

The snapshot is written here directly (a completed refresh and its customer_analytics rows), so these tests
read what a refresh would have stored; the summary is the one analytics/summaries.py computes from those rows.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, select

from services.contacts.analytics.params import Parameters
from services.contacts.analytics.summaries import summarize
from services.contacts.models import AnalyticsRefresh, Contact, CustomerAnalytics
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

BASE = "/api/v1/analytics"
READ = identity_headers("contacts:read")
ANALYST = identity_headers("contacts:read", "contacts:analytics")
AS_OF = datetime(2026, 6, 1, tzinfo=timezone.utc)
UNIT = 10_000  # money in the snapshot is units of 1/10,000
MEASURES = ("abc", "rfm", "clv", "profitability", "pyramid", "lifecycle")

# One row per customer: what a refresh would have stored (money in whole currency units here, x UNIT below).
# current profits 100, 20, -5, 0 -> lower median 0; predicted 300, 5, 10, 0 -> lower median 5.
CUSTOMERS = {
    "ann": dict(purchases_window=9, revenue_window=800, purchase_count=12, margin_total=250, cost_total=50,
                abc_class="A", abc_rank=1, abc_cumulative=800, recency_score=5, frequency_score=5, monetary_score=5,
                rfm_segment="champions", predicted_margin=300, clv=500, current_profit=100, quadrant="best",
                pyramid_level="top", stage="loyal", purchases_all_currencies=12),
    "bob": dict(purchases_window=4, revenue_window=150, purchase_count=5, margin_total=60, cost_total=10,
                abc_class="B", abc_rank=2, abc_cumulative=950, recency_score=3, frequency_score=4, monetary_score=4,
                rfm_segment="loyal", predicted_margin=5, clv=100, current_profit=20, quadrant="hold",
                pyramid_level="big", stage="repeater", purchases_all_currencies=5),
    "cy": dict(purchases_window=1, revenue_window=50, purchase_count=1, margin_total=15, cost_total=5,
               abc_class="C", abc_rank=3, abc_cumulative=1000, recency_score=1, frequency_score=3, monetary_score=2,
               rfm_segment="at_risk", predicted_margin=10, clv=20, current_profit=-5, quadrant="invest",
               pyramid_level="medium", stage="new", purchases_all_currencies=1),
    "dee": dict(purchases_window=0, revenue_window=0, purchase_count=2, margin_total=0, cost_total=10,
                predicted_margin=0, clv=-10, current_profit=0, quadrant="worst", pyramid_level="inactive",
                stage="lapsed", purchases_all_currencies=2),
    "eve": dict(pyramid_level="prospect", stage="prospect"),
}
MONEY_KEYS = {"revenue_window": "revenue_window_units", "margin_total": "margin_total_units",
              "cost_total": "cost_total_units", "abc_cumulative": "abc_cumulative_units",
              "predicted_margin": "predicted_margin_units", "clv": "clv_units",
              "current_profit": "current_profit_units"}


def make_contacts(runtime) -> dict[str, uuid.UUID]:
    """The five customers, created in the order ann..eve; name -> id."""
    ids = {}
    with runtime.session_factory() as s, s.begin():
        for name in CUSTOMERS:
            contact = Contact(id=uuid.uuid4(), email=f"{name}@example.com", email_normalized=f"{name}@example.com",
                              first_name=name.title(), last_name="Doe")
            s.add(contact)
            ids[name] = contact.id
    return ids


@pytest.fixture
def contacts(runtime) -> dict[str, uuid.UUID]:
    return make_contacts(runtime)


def write_snapshot(runtime, contacts, *, currency="EUR", customers=CUSTOMERS, as_of=AS_OF,
                   status="completed") -> AnalyticsRefresh:
    """A refresh of `currency` with one customer_analytics row per customer and summarize()'s summary."""
    params = Parameters()
    with runtime.session_factory() as s, s.begin():
        refresh = AnalyticsRefresh(id=uuid.uuid4(), status=status, trigger="schedule", currency=currency,
                                   as_of=as_of, parameters={"window_days": 365}, requested_by="test",
                                   customers=len(customers), finished_at=as_of + timedelta(minutes=1),
                                   summary={}, timings={})
        s.add(refresh)
        s.flush()
        for name, values in customers.items():
            row = {MONEY_KEYS.get(key, key): value * UNIT if key in MONEY_KEYS else value
                   for key, value in values.items()}
            s.add(CustomerAnalytics(refresh_id=refresh.id, contact_id=contacts[name], **row))
        s.flush()
        refresh.summary = summarize(s, refresh, params)
    return refresh


@pytest.fixture
def snapshot(runtime, contacts) -> AnalyticsRefresh:
    return write_snapshot(runtime, contacts)


def _get(client, url, headers=READ, status=200):
    response = client.get(url, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.json


def _problem(client, url, status, headers=READ) -> dict:
    response = client.get(url, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.json


def _emails(body) -> list[str]:
    return [item["email"].split("@")[0] for item in body["items"]]


def _every_page(client, url, limit=1) -> list[str]:
    seen, cursor = [], None
    while True:
        page = f"{url}{'&' if '?' in url else '?'}limit={limit}"
        body = _get(client, page + (f"&cursor={cursor}" if cursor else ""))
        seen += _emails(body)
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


# -- before a snapshot, and which snapshot -----------------------------------------------------------------------

def test_every_report_is_a_404_problem_before_the_currencys_first_snapshot(client, runtime, contacts):
    write_snapshot(runtime, contacts, status="running")  # not completed: not a snapshot yet
    for measure in MEASURES:
        problem = _problem(client, f"{BASE}/{measure}", 404)
        assert "POST /api/v1/analytics/refreshes" in problem["detail"]


def test_a_report_reads_the_newest_completed_snapshot_of_the_currency_asked_for(client, runtime, contacts):
    older = write_snapshot(runtime, contacts, as_of=AS_OF - timedelta(days=1))
    newer = write_snapshot(runtime, contacts)
    write_snapshot(runtime, contacts, status="pending", as_of=AS_OF + timedelta(days=1))
    body = _get(client, f"{BASE}/abc")
    assert body["snapshot"]["id"] == str(newer.id) != str(older.id)
    assert body["snapshot"] == {"id": str(newer.id), "currency": "EUR", "as_of": "2026-06-01T00:00:00+00:00",
                                "window_start": "2025-06-01T00:00:00+00:00",
                                "finished_at": "2026-06-01T00:01:00+00:00", "customers": 5,
                                "parameters": {"window_days": 365}}
    usd = write_snapshot(runtime, contacts, currency="USD", customers={"eve": CUSTOMERS["eve"]})
    assert _get(client, f"{BASE}/pyramid?currency=usd")["snapshot"]["id"] == str(usd.id)
    assert _emails(_get(client, f"{BASE}/pyramid?currency=USD")) == ["eve"]
    _problem(client, f"{BASE}/pyramid?currency=GBP", 404)


def test_the_currency_must_be_three_letters(client, snapshot):
    for bad in ("EURO", "E1R", "", "12"):
        problem = _problem(client, f"{BASE}/clv?currency={bad}", 422)
        assert "currency" in problem["errors"]


def test_the_reports_need_contacts_read(client, snapshot):
    for measure in MEASURES:
        _problem(client, f"{BASE}/{measure}", 403, headers=identity_headers("contacts:write"))


# -- each report -------------------------------------------------------------------------------------------------

def test_the_abc_report_has_each_class_the_pareto_curve_and_customers_by_rank(client, snapshot):
    body = _get(client, f"{BASE}/abc")
    summary = body["summary"]
    assert (summary["customers"], summary["revenue"]) == (3, "1000.0000")
    assert summary["classes"] == {
        "A": {"customers": 1, "revenue": "800.0000", "revenue_share": "0.8000", "customer_share": "0.3333"},
        "B": {"customers": 1, "revenue": "150.0000", "revenue_share": "0.1500", "customer_share": "0.3333"},
        "C": {"customers": 1, "revenue": "50.0000", "revenue_share": "0.0500", "customer_share": "0.3333"}}
    pareto = summary["pareto"]
    # k % of 3 customers is rank ceil(3k/100): 1 up to k = 33, 2 from 34 to 66, 3 from 67.
    assert len(pareto) == 101
    assert pareto[0] == {"customer_share": "0.0000", "revenue_share": "0.0000"}
    assert [pareto[k]["revenue_share"] for k in (1, 33, 34, 66, 67, 100)] == \
        ["0.8000", "0.8000", "0.9500", "0.9500", "1.0000", "1.0000"]
    assert pareto[50]["customer_share"] == "0.5000"
    assert _emails(body) == ["ann", "bob", "cy"]  # by rank; dee and eve are outside the ABC population
    assert body["items"][1] == {"contact_id": body["items"][1]["contact_id"], "email": "bob@example.com",
                                "first_name": "Bob", "last_name": "Doe", "abc_class": "B", "abc_rank": 2,
                                "revenue": "150.0000", "cumulative_revenue": "950.0000"}
    assert _emails(_get(client, f"{BASE}/abc?class=A")) == ["ann"]
    assert _emails(_get(client, f"{BASE}/abc?class=C&class=B")) == ["bob", "cy"]
    assert _every_page(client, f"{BASE}/abc") == ["ann", "bob", "cy"]
    assert "class" in _problem(client, f"{BASE}/abc?class=D", 422)["errors"]


def test_the_rfm_report_has_each_segment_and_score_and_customers_by_revenue(client, snapshot):
    body = _get(client, f"{BASE}/rfm")
    summary = body["summary"]
    assert summary["customers"] == 3
    assert summary["segments"]["champions"] == {"customers": 1, "revenue": "800.0000", "customer_share": "0.3333"}
    assert summary["segments"]["at_risk"] == {"customers": 1, "revenue": "50.0000", "customer_share": "0.3333"}
    assert summary["segments"]["hibernating"] == {"customers": 0, "revenue": "0.0000", "customer_share": "0.0000"}
    assert summary["scores"] == {"recency": {"1": 1, "2": 0, "3": 1, "4": 0, "5": 1},
                                 "frequency": {"1": 0, "2": 0, "3": 1, "4": 1, "5": 1},
                                 "monetary": {"1": 0, "2": 1, "3": 0, "4": 1, "5": 1}}
    assert _emails(body) == ["ann", "bob", "cy"]
    first = body["items"][0]
    assert (first["rfm_segment"], first["recency_score"], first["frequency_score"], first["monetary_score"],
            first["purchases"], first["revenue"]) == ("champions", 5, 5, 5, 9, "800.0000")
    assert _emails(_get(client, f"{BASE}/rfm?segment=loyal&segment=at_risk")) == ["bob", "cy"]
    assert _every_page(client, f"{BASE}/rfm?segment=champions&segment=loyal&segment=at_risk") == ["ann", "bob", "cy"]
    _problem(client, f"{BASE}/rfm?segment=sleepy", 422)


def test_the_clv_report_has_totals_the_retention_and_quintiles_and_customers_by_clv(client, snapshot):
    body = _get(client, f"{BASE}/clv")
    summary = body["summary"]
    # 500 + 100 + 20 - 10 over four customers; no one bought in the year before last: the default retention.
    assert (summary["customers"], summary["total"], summary["average"]) == (4, "610.0000", "152.5000")
    assert (summary["predicted_margin"], summary["historical_margin"], summary["cost_to_serve"]) == \
        ("315.0000", "325.0000", "75.0000")
    assert (summary["retention"], summary["discount_rate"]) == ("0.5000", "0.10")
    # ntile(5) over four values: one per band, the lowest first; the fifth band is empty.
    assert [(b["band"], b["customers"], b["min"], b["max"], b["total"]) for b in summary["bands"]] == [
        (1, 1, "-10.0000", "-10.0000", "-10.0000"), (2, 1, "20.0000", "20.0000", "20.0000"),
        (3, 1, "100.0000", "100.0000", "100.0000"), (4, 1, "500.0000", "500.0000", "500.0000")]
    assert _emails(body) == ["ann", "bob", "cy", "dee"]
    assert body["items"][3]["clv"] == "-10.0000" and body["items"][0]["predicted_margin"] == "300.0000"
    assert _every_page(client, f"{BASE}/clv") == ["ann", "bob", "cy", "dee"]


def test_the_clv_summary_names_the_retention_observed_over_the_last_two_years(runtime, client, contacts):
    # ann, bob and cy bought in the year before last; ann and cy bought again in the last year: 2/3.
    years = {"ann": (1, 2), "bob": (3, 0), "cy": (1, 1), "dee": (0, 2)}
    customers = {name: {**values, **dict(zip(("purchases_year_before", "purchases_last_year"), years[name]))}
                 if name in years else values for name, values in CUSTOMERS.items()}
    write_snapshot(runtime, contacts, customers=customers)
    assert _get(client, f"{BASE}/clv")["summary"]["retention"] == "0.6667"


def test_the_profitability_report_has_each_quadrant_and_its_thresholds(client, snapshot):
    body = _get(client, f"{BASE}/profitability")
    summary = body["summary"]
    assert summary["thresholds"] == {"current": {"rule": "median", "value": "0.0000"},
                                     "future": {"rule": "median", "value": "5.0000"}}
    assert summary["quadrants"] == {
        "best": {"customers": 1, "current_profit": "100.0000", "future_profit": "300.0000", "customer_share": "0.2500"},
        "invest": {"customers": 1, "current_profit": "-5.0000", "future_profit": "10.0000",
                   "customer_share": "0.2500"},
        "hold": {"customers": 1, "current_profit": "20.0000", "future_profit": "5.0000", "customer_share": "0.2500"},
        "worst": {"customers": 1, "current_profit": "0.0000", "future_profit": "0.0000", "customer_share": "0.2500"}}
    assert _emails(body) == ["ann", "bob", "dee", "cy"]  # current profit, highest first
    assert _emails(_get(client, f"{BASE}/profitability?quadrant=invest")) == ["cy"]
    assert _every_page(client, f"{BASE}/profitability?quadrant=best&quadrant=worst") == ["ann", "dee"]
    _problem(client, f"{BASE}/profitability?quadrant=good", 422)


def test_the_pyramid_report_has_each_level_and_customers_by_revenue(client, contacts, snapshot):
    body = _get(client, f"{BASE}/pyramid")
    summary = body["summary"]
    assert (summary["customers"], summary["revenue"]) == (5, "1000.0000")
    assert summary["levels"]["top"] == {"customers": 1, "revenue": "800.0000", "revenue_share": "0.8000",
                                        "customer_share": "0.2000"}
    assert summary["levels"]["small"] == {"customers": 0, "revenue": "0.0000", "revenue_share": "0.0000",
                                          "customer_share": "0.0000"}
    assert [summary["levels"][level]["customers"] for level in ("inactive", "prospect")] == [1, 1]
    # dee and eve tie at no revenue: the contact id decides, highest first, as the other ties.
    tied = [name for _id, name in sorted(((contacts[name], name) for name in ("dee", "eve")), reverse=True)]
    assert _emails(_get(client, f"{BASE}/pyramid?level=inactive&level=prospect")) == tied
    assert _every_page(client, f"{BASE}/pyramid", limit=2) == ["ann", "bob", "cy", *tied]


def test_the_lifecycle_report_has_each_stage(client, snapshot):
    body = _get(client, f"{BASE}/lifecycle")
    summary = body["summary"]
    assert {stage: figures["customers"] for stage, figures in summary["stages"].items()} == {
        "prospect": 1, "new": 1, "general": 0, "repeater": 1, "loyal": 1, "lapsed": 1}
    assert (summary["customers"], summary["set_by_plugins"]) == (5, 0)  # the rows here name no source
    assert _emails(_get(client, f"{BASE}/lifecycle?stage=prospect")) == ["eve"]
    item = _get(client, f"{BASE}/lifecycle?stage=loyal")["items"][0]
    assert (item["stage"], item["purchases"]) == ("loyal", 12)
    assert _every_page(client, f"{BASE}/lifecycle?stage=loyal&stage=repeater&stage=lapsed&stage=new") == \
        ["ann", "bob", "dee", "cy"]  # purchases in every currency, most first


def test_a_cursor_of_one_report_is_refused_by_another_and_a_forged_one_by_all(client, snapshot):
    cursor = _get(client, f"{BASE}/abc?limit=1")["next_cursor"]
    assert "cursor" in _problem(client, f"{BASE}/clv?limit=1&cursor={cursor}", 422)["errors"]
    for forged in ("abc", "cjpbImFiY19yYW5rIiwxLjUsIngiXQ", "cjpbImFiY19yYW5rIiwxLCJ4Il0"):  # 1.5; "x" as an id
        assert "cursor" in _problem(client, f"{BASE}/abc?cursor={forged}", 422)["errors"]


def test_a_contact_erased_since_the_snapshot_keeps_its_place_but_is_not_shown(client, runtime, contacts, snapshot):
    with runtime.session_factory() as s, s.begin():
        s.execute(delete(Contact).where(Contact.id == contacts["bob"]))
    first = _get(client, f"{BASE}/abc?limit=2")
    assert _emails(first) == ["ann"] and first["next_cursor"] is not None
    assert _emails(_get(client, f"{BASE}/abc?limit=2&cursor={first['next_cursor']}")) == ["cy"]


# -- ?refresh=true -------------------------------------------------------------------------------------------------

def test_refresh_true_needs_the_analytics_scope(client, snapshot):
    problem = _problem(client, f"{BASE}/abc?refresh=true", 403)
    assert "contacts:analytics" in problem["detail"]


def test_refresh_true_is_refused_above_the_sync_limit_and_names_the_job(service_app):
    app = service_app("contacts", CRM_ANALYTICS_SYNC_LIMIT="1")
    runtime = app.extensions["crm.runtime"]
    with runtime.session_factory() as s, s.begin():
        s.add_all(Contact(email=f"p{i}@example.com", email_normalized=f"p{i}@example.com") for i in range(2))
    problem = _problem(app.test_client(), f"{BASE}/rfm?refresh=true", 409, headers=ANALYST)
    assert "POST /api/v1/analytics/refreshes" in problem["detail"]
    with runtime.session_factory() as s:
        assert s.scalars(select(AnalyticsRefresh)).all() == []


def test_refresh_true_runs_a_refresh_in_the_request_and_reports_it(client, runtime, contacts):
    body = _get(client, f"{BASE}/pyramid?refresh=true&currency=eur", headers=ANALYST)
    with runtime.session_factory() as s:
        [refresh] = s.scalars(select(AnalyticsRefresh)).all()
    assert (refresh.status, refresh.trigger, refresh.currency) == ("completed", "request", "EUR")
    assert body["snapshot"]["id"] == str(refresh.id)
    assert body["summary"] == refresh.summary["pyramid"]
