"""Scorecard arithmetic, periods and weights, without I/O."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from crm_plugins.types import AppliedCriterion

from services.common.problems import Unprocessable
from services.common.settings import SettingsError
from services.partners.scorecards import (
    DEFAULT_WEIGHTS,
    MONTH,
    QUARTER,
    YEAR,
    current_quarter,
    metrics_from,
    overall_score,
    parse_period,
    parse_weights,
    rate,
    trend_periods,
)

D = Decimal


def counts(**overrides) -> dict:
    base = {"deliveries": 10, "delivered": 8, "on_time": 6, "disputes": 1, "priced": 4, "within_price": 3,
            "quantity_ordered": D("1000.000"), "quantity_delivered": D("800.000"), "quantity_rejected": D("40.000")}
    return {**base, **overrides}


def test_the_rates_divide_the_counts_and_round_half_up_to_four_places():
    m = metrics_from(counts())
    assert (m.on_time_rate, m.fill_rate, m.quality_rate, m.dispute_rate, m.price_adherence) == (
        D("0.7500"), D("0.8000"), D("0.9500"), D("0.1000"), D("0.7500"))
    assert rate(2, 3) == D("0.6667") and rate(1, 8) == D("0.1250") and rate(1, 20000) == D("0.0001")
    assert rate(1, 30000) == D("0.0000")


def test_a_rate_with_nothing_to_divide_by_is_none():
    m = metrics_from(counts(deliveries=0, delivered=0, on_time=0, disputes=0, priced=0, within_price=0,
                            quantity_ordered=D(0), quantity_delivered=D(0), quantity_rejected=D(0)))
    assert (m.on_time_rate, m.fill_rate, m.quality_rate, m.dispute_rate, m.price_adherence) == (None,) * 5
    # Ordered but nothing arrived: fill rate 0, on-time and quality unknown.
    m = metrics_from(counts(delivered=0, on_time=0, quantity_delivered=D(0), quantity_rejected=D(0)))
    assert (m.on_time_rate, m.fill_rate, m.quality_rate) == (None, D("0.0000"), None)


def test_the_overall_score_is_the_weighted_average_of_the_rates_with_a_value():
    m = metrics_from(counts())
    # 30*0.75 + 25*0.8 + 25*0.95 + 10*(1-0.1) + 10*0.75 = 22.5+20+23.75+9+7.5 = 82.75 over 100
    assert overall_score(m, DEFAULT_WEIGHTS) == D("0.8275")
    # Without agreed amounts price adherence drops out, and the others keep their relative weights.
    m = metrics_from(counts(priced=0, within_price=0))
    assert overall_score(m, DEFAULT_WEIGHTS) == (D("75.25") / 90).quantize(D("0.0001"))


def test_a_dispute_rate_above_one_counts_as_zero_not_below():
    m = metrics_from(counts(disputes=25))
    assert m.dispute_rate == D("2.5000")
    only_disputes = {name: D(0) for name in DEFAULT_WEIGHTS} | {"dispute_rate": D(1)}
    assert overall_score(m, only_disputes) == D("0.0000")


def test_plugin_criteria_join_the_average_with_their_weight_and_zero_weights_are_left_out():
    m = metrics_from(counts())
    criteria = [AppliedCriterion("p", "certified", D(1), D(100), "ISO 9001"),
                AppliedCriterion("p", "ignored", D(0), D(0), "weight 0")]
    assert overall_score(m, DEFAULT_WEIGHTS, criteria) == ((D("82.75") + 100) / 200).quantize(D("0.0001"))
    empty = metrics_from(counts(deliveries=0, delivered=0, on_time=0, disputes=0, priced=0, within_price=0,
                                quantity_ordered=D(0), quantity_delivered=D(0), quantity_rejected=D(0)))
    assert overall_score(empty, DEFAULT_WEIGHTS) is None
    assert overall_score(empty, DEFAULT_WEIGHTS, criteria[:1]) == D("1.0000")


@pytest.mark.parametrize("text, kind, start, end", [
    ("2026-Q3", QUARTER, date(2026, 7, 1), date(2026, 9, 30)),
    ("2026-Q1", QUARTER, date(2026, 1, 1), date(2026, 3, 31)),
    ("2024-02", MONTH, date(2024, 2, 1), date(2024, 2, 29)),
    ("2026-12", MONTH, date(2026, 12, 1), date(2026, 12, 31)),
    ("2026", YEAR, date(2026, 1, 1), date(2026, 12, 31)),
    ("9999-Q4", QUARTER, date(9999, 10, 1), date(9999, 12, 31)),
])
def test_a_period_parses_to_its_first_and_last_day_and_back(text, kind, start, end):
    period = parse_period(text)
    assert (period.kind, period.start, period.end, period.label) == (kind, start, end, text)


@pytest.mark.parametrize("text", ["2026-Q0", "2026-Q5", "2026-13", "2026-00", "26", "0000", "2026-q3", "2026-9",
                                  "2026-Q3-01", ""])
def test_anything_else_is_not_a_period(text):
    with pytest.raises(ValueError):
        parse_period(text)


def test_the_default_period_is_the_current_quarter():
    assert current_quarter(date(2026, 11, 24)).label == "2026-Q4"
    assert current_quarter(date(2026, 1, 1)).label == "2026-Q1"


def test_a_trend_is_consecutive_periods_oldest_first():
    today = date(2026, 11, 24)
    assert [p.label for p in trend_periods(today=today)] == ["2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4"]
    assert [p.label for p in trend_periods(count=3, last=parse_period("2026-02"), today=today)] == [
        "2025-12", "2026-01", "2026-02"]
    assert [p.label for p in trend_periods(first=parse_period("2024"), today=today)] == ["2024", "2025", "2026"]
    assert [p.label for p in trend_periods(first=parse_period("2025-Q4"), last=parse_period("2026-Q1"),
                                           today=today)] == ["2025-Q4", "2026-Q1"]


@pytest.mark.parametrize("kwargs, field", [
    ({"first": parse_period("2026"), "last": parse_period("2026-Q3")}, "from"),
    ({"first": parse_period("2026-Q4"), "last": parse_period("2026-Q3")}, "from"),
    ({"first": parse_period("2020-01"), "last": parse_period("2026-01")}, "from"),
    ({"first": parse_period("2026-Q1"), "count": 2}, "periods"),
    ({"last": parse_period("0001-Q2"), "count": 3}, "periods"),
])
def test_a_trend_that_cannot_be_is_a_422_naming_the_argument(kwargs, field):
    with pytest.raises(Unprocessable) as caught:
        trend_periods(today=date(2026, 11, 24), **kwargs)
    assert list(caught.value.extra["errors"]) == [field]


def test_periods_of_one_kind_order_by_time():
    assert parse_period("2025-Q4") < parse_period("2026-Q1")
    assert parse_period("2026-01").shifted(-1).label == "2025-12"
    with pytest.raises(ValueError):
        parse_period("0001-01").shifted(-1)


def test_the_weights_setting_replaces_named_defaults_and_refuses_anything_else():
    assert parse_weights("") == DEFAULT_WEIGHTS
    weights = parse_weights('{"on_time_rate": 50, "price_adherence": 0.5}')
    assert weights == {**DEFAULT_WEIGHTS, "on_time_rate": D(50), "price_adherence": D("0.5")}
    for raw in ("[1]", "{", '{"speed": 1}', '{"fill_rate": -1}', '{"fill_rate": "1"}', '{"fill_rate": 1001}',
                '{"on_time_rate": 0, "fill_rate": 0, "quality_rate": 0, "dispute_rate": 0, "price_adherence": 0}'):
        with pytest.raises(SettingsError) as caught:
            parse_weights(raw)
        assert caught.value.variable == "CRM_PARTNERS_SCORECARD_WEIGHTS"
