"""The `crm_assess_partner_risk` hook: the built-in rules (`builtin.partner_risk`), the host's isolation and the
harness."""
from __future__ import annotations

import dataclasses
import re
import sys
import types
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from crm_builtin import partner_risk
from crm_builtin.partner_risk import PartnerRisk, RiskParameters
from crm_plugins import DeliveryPeriod, OpenDisputes, RiskAssessment, RiskFactor, SpendShare, hookimpl
from crm_plugins.testing import (
    make_host,
    run_assess_partner_risk,
    sample_contract,
    sample_partner,
    sample_partner_history,
    sample_spend,
)

from services.common.plugins import build_plugin_host


def _month(month: int, deliveries: int, on_time: int, delivered: str = "1000", rejected: str = "0") -> DeliveryPeriod:
    return DeliveryPeriod(first_day=date(2026, month, 1), last_day=date(2026, month, 28), deliveries=deliveries,
                          on_time=on_time, quantity_ordered=Decimal("1000"), quantity_delivered=Decimal(delivered),
                          quantity_rejected=Decimal(rejected))


def _codes(factors) -> list[str]:
    return [f.code for f in factors]


# --- the quiet sample -----------------------------------------------------------------------------------------

def test_the_sample_partner_carries_no_risk():
    assessment = run_assess_partner_risk(partner_risk, plugin_name="builtin.partner_risk")

    assert assessment == RiskAssessment(score=0, level="low")


# --- delivery trend -------------------------------------------------------------------------------------------

def test_an_on_time_rate_falling_by_ten_points_is_a_factor_with_both_rates_in_its_reason():
    history = sample_partner_history(periods=(_month(1, 10, 10), _month(2, 10, 9), _month(3, 10, 8), _month(4, 10, 7)))

    [factor] = partner_risk.delivery_trend(history)

    assert (factor.code, factor.weight) == ("on_time_falling", 20)
    assert factor.reason == ("on-time rate fell from 95.0% (2026-01..2026-02, 20 deliveries) "
                             "to 75.0% (2026-03..2026-04, 20 deliveries)")


def test_a_fall_just_short_of_the_threshold_is_no_factor():
    history = sample_partner_history(periods=(_month(1, 20, 20), _month(2, 20, 20), _month(3, 20, 19),
                                              _month(4, 20, 17)))  # 100% -> 90.0% is a drop of exactly 0.10

    assert _codes(partner_risk.delivery_trend(history)) == ["on_time_falling"]
    assert partner_risk.delivery_trend(history, RiskParameters(on_time_drop=Decimal("0.11"))) == []


def test_a_rising_quality_rate_is_no_factor_and_a_falling_one_is():
    worse = sample_partner_history(periods=(_month(1, 5, 5, rejected="10"), _month(2, 5, 5, rejected="100"),
                                            _month(3, 5, 5, rejected="150")))
    better = sample_partner_history(periods=tuple(reversed(worse.periods)))

    assert _codes(partner_risk.delivery_trend(worse)) == ["quality_falling"]
    assert partner_risk.delivery_trend(better) == []


def test_months_with_too_few_deliveries_do_not_make_a_trend():
    history = sample_partner_history(periods=(_month(1, 2, 2), _month(2, 10, 5), _month(3, 1, 0)))

    assert partner_risk.delivery_trend(history) == []  # only one month counts: nothing to compare it with


# --- open disputes --------------------------------------------------------------------------------------------

def test_open_disputes_cost_points_each_and_escalated_ones_more_up_to_the_ceiling():
    opened = datetime(2026, 5, 1, tzinfo=timezone.utc)
    history = sample_partner_history(open_disputes=(
        OpenDisputes(category="quality", currency="EUR", count=2, amount=Decimal("1200.50"), escalated=1,
                     oldest_opened_at=opened),
        OpenDisputes(category="delay", currency="EUR", count=1, amount=Decimal("99.50"), oldest_opened_at=opened),
    ))

    factor = partner_risk.open_disputes(history)

    assert (factor.code, factor.weight) == ("open_disputes", 20)  # 3 x 5 + 1 x 5
    assert factor.reason == "3 unresolved disputes (1 delay, 2 quality) claiming 1300.00 EUR; 1 escalated"
    assert partner_risk.open_disputes(history, RiskParameters(disputes_max_weight=12)).weight == 12
    assert partner_risk.open_disputes(sample_partner_history()) is None


# --- concentration --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("partner_amount", "expected"), [
    ("249.99", None), ("250.00", ("concentration", 10)), ("499.99", ("concentration", 10)),
    ("500.00", ("concentration_high", 20)), ("1000.00", ("concentration_high", 20)),
])
def test_concentration_is_graded_by_the_share_of_spend(partner_amount, expected):
    history = sample_partner_history(spend=(sample_spend(partner_amount=Decimal(partner_amount),
                                                         total_amount=Decimal("1000.00")),))

    factor = partner_risk.concentration(history)

    assert (factor.code, factor.weight) if factor else None == expected


def test_the_highest_share_over_the_currencies_counts_and_no_spend_is_no_factor():
    history = sample_partner_history(spend=(
        SpendShare(currency="EUR", partner_amount=Decimal("10"), total_amount=Decimal("1000")),
        SpendShare(currency="USD", partner_amount=Decimal("600"), total_amount=Decimal("1000")),
    ))

    factor = partner_risk.concentration(history)

    assert factor.reason == "60.0% of the amount delivered in USD over the last 12 months (600.00 of 1000.00)"
    assert partner_risk.concentration(sample_partner_history(spend=())) is None
    empty = SpendShare(currency="EUR", partner_amount=Decimal(0), total_amount=Decimal(0))
    assert partner_risk.concentration(sample_partner_history(spend=(empty,))) is None


# --- contracts expiring ---------------------------------------------------------------------------------------

AS_OF = date(2026, 6, 15)


def _expiring(**fields):
    return sample_contract(effective_to=date(2026, 8, 31), **fields)


def test_a_contract_ending_within_ninety_days_without_renewal_or_successor_is_a_factor():
    history = sample_partner_history(as_of=AS_OF, contracts=(_expiring(),))

    [factor] = partner_risk.expiring_contracts(history)

    assert (factor.code, factor.weight) == ("contract_expiring", 20)
    assert "ends on 2026-08-31 (in 77 days)" in factor.reason


@pytest.mark.parametrize("contracts", [
    pytest.param((_expiring(auto_renew=True),), id="auto-renews"),
    pytest.param((_expiring(proposed_effective_to=date(2027, 8, 31)),), id="a proposal extends it"),
    pytest.param((_expiring(proposed_auto_renew=True),), id="a proposal makes it renew"),
    pytest.param((_expiring(), sample_contract(id="next", effective_from=date(2026, 9, 1), effective_to=None)),
                 id="a successor starts the next day"),
    pytest.param((sample_contract(effective_to=date(2026, 9, 14)),), id="ends on day 91"),
    pytest.param((sample_contract(effective_to=date(2026, 6, 14)),), id="already ended"),
])
def test_a_contract_that_renews_is_extended_followed_or_not_ending_soon_is_no_factor(contracts):
    assert partner_risk.expiring_contracts(sample_partner_history(as_of=AS_OF, contracts=contracts)) == []


def test_a_successor_that_leaves_a_gap_does_not_cover_and_a_shorter_proposal_does_not_extend():
    contracts = (_expiring(proposed_effective_to=date(2026, 7, 31)),
                 sample_contract(id="later", effective_from=date(2026, 9, 2), effective_to=None))

    assert _codes(partner_risk.expiring_contracts(sample_partner_history(as_of=AS_OF, contracts=contracts))) == [
        "contract_expiring"]


# --- the plugin as a whole ------------------------------------------------------------------------------------

def test_a_partner_tripping_every_rule_scores_one_hundred_and_is_high():
    history = sample_partner_history(
        as_of=AS_OF,
        periods=(_month(1, 10, 10), _month(2, 10, 10), _month(3, 10, 5, rejected="200"), _month(4, 10, 5, rejected="200")),
        open_disputes=(OpenDisputes(category="price", currency="EUR", count=5, amount=Decimal("10")),),
        spend=(sample_spend(partner_amount=Decimal("900"), total_amount=Decimal("1000")),),
        contracts=(_expiring(),),
    )

    assessment = run_assess_partner_risk(partner_risk, history=history, plugin_name="builtin.partner_risk")

    assert _codes(assessment.factors) == ["on_time_falling", "quality_falling", "open_disputes",
                                          "concentration_high", "contract_expiring"]
    assert {f.plugin for f in assessment.factors} == {"builtin.partner_risk"}
    assert (assessment.score, assessment.level, assessment.degraded) == (100, "high", ())


def test_a_plugin_instance_applies_its_own_parameters():
    history = sample_partner_history(spend=(sample_spend(partner_amount=Decimal("300"), total_amount=Decimal("1000")),))

    default = run_assess_partner_risk(partner_risk, history=history)
    stricter = run_assess_partner_risk(PartnerRisk(RiskParameters(concentration_high=Decimal("0.3"))), history=history)

    assert _codes(default.factors) == ["concentration"]
    assert _codes(stricter.factors) == ["concentration_high"]


# --- the host's rules -----------------------------------------------------------------------------------------

class Fixed:
    """A fake plugin that always gives the same weight."""

    def __init__(self, weight: int, code: str = "fixed"):
        self.weight, self.code = weight, code

    @hookimpl
    def crm_assess_partner_risk(self, partner, history):
        return RiskFactor(self.code, self.weight, f"always {self.weight}")


class Raising:
    @hookimpl
    def crm_assess_partner_risk(self, partner, history):
        raise RuntimeError("secret database password in here")


class Malformed:
    @hookimpl
    def crm_assess_partner_risk(self, partner, history):
        return {"code": "dict", "weight": 10, "reason": "not a RiskFactor"}


class FloatWeight:
    @hookimpl
    def crm_assess_partner_risk(self, partner, history):
        factor = object.__new__(RiskFactor)  # around __init__'s own check, as a careless plugin might
        object.__setattr__(factor, "code", "float")
        object.__setattr__(factor, "weight", 12.5)
        object.__setattr__(factor, "reason", "a float weight")
        return [factor]


def test_weights_add_up_clamped_to_zero_and_one_hundred_with_the_level_at_its_thresholds():
    def assess(*weights):
        host = make_host(*[Fixed(w, f"f{i}") for i, w in enumerate(weights)], names=[f"p{i}" for i in range(len(weights))])
        return host.assess_partner_risk(sample_partner(), sample_partner_history())

    assert (assess(20, 9).score, assess(20, 9).level) == (29, "low")
    assert assess(20, 10).level == "medium"
    assert (assess(50, 9).level, assess(50, 10).level) == ("medium", "high")
    assert assess(80, 80).score == 100
    assert assess(10, -40).score == 0


def test_a_raising_and_a_malformed_plugin_degrade_the_assessment_and_the_others_still_count():
    host = make_host(Fixed(15), Raising(), Malformed(), FloatWeight(), names=["steady", "boom", "dict", "float"])

    assessment = host.assess_partner_risk(sample_partner(), sample_partner_history())

    assert [(f.plugin, f.code, f.weight) for f in assessment.factors] == [("steady", "fixed", 15)]
    assert assessment.score == 15
    assert sorted(d.to_dict()["plugin"] for d in assessment.degraded) == ["boom", "dict", "float"]
    codes = {d.plugin: d.code for d in assessment.degraded}
    assert codes == {"boom": "plugin_error", "dict": "plugin_malformed_result", "float": "plugin_malformed_result"}
    assert "password" not in str(assessment.to_dict())


@pytest.mark.parametrize("bad", [
    {"weight": True}, {"weight": 1.0}, {"weight": 101}, {"weight": -101}, {"code": " "}, {"reason": None},
])
def test_a_risk_factor_refuses_bad_values_where_the_plugin_builds_it(bad):
    fields = {"code": "c", "weight": 1, "reason": "r", **bad}
    with pytest.raises(TypeError, match="invalid RiskFactor"):
        RiskFactor(**fields)


def test_the_history_is_frozen():
    history = sample_partner_history()
    with pytest.raises(dataclasses.FrozenInstanceError):
        history.as_of = date(2020, 1, 1)
    assert history.periods[0].on_time_rate == Decimal("0.9000")
    assert history.periods[0].quality_rate == Decimal("0.9798")


# --- the guide's crm_assess_partner_risk examples run and their tests pass -----------------------------------

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "plugins.md"


def _risk_examples() -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    start = text.index("## crm_assess_partner_risk(")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```py\n(.*?)```", text[start:end if end != -1 else None], re.DOTALL)


def test_the_guide_risk_examples_run_and_their_own_tests_pass(monkeypatch):
    examples = _risk_examples()
    (plugin_code,) = [code for code in examples if "@hookimpl" in code]
    (test_code,) = [code for code in examples if "def test_" in code]
    plugin = types.ModuleType("single_source")
    exec(compile(plugin_code, "docs/plugins.md:single_source", "exec"), plugin.__dict__)  # noqa: S102 - our guide

    host = build_plugin_host(include_builtins=False, include_entry_points=False)
    host.register(partner_risk, name="builtin.partner_risk")
    host.register(plugin, name="single_source")
    history = sample_partner_history(spend=(sample_spend(partner_amount=Decimal("900"), total_amount=Decimal("1000")),))
    together = host.assess_partner_risk(sample_partner(), history)
    assert [(f.plugin, f.code) for f in together.factors] == [
        ("builtin.partner_risk", "concentration_high"), ("single_source", "single_source")]

    monkeypatch.setitem(sys.modules, "single_source", plugin)
    tests = types.ModuleType("guide_risk_tests")
    exec(compile(test_code, "docs/plugins.md:tests", "exec"), tests.__dict__)  # noqa: S102
    names = [n for n in vars(tests) if n.startswith("test_")]
    assert len(names) == 2
    for name in names:
        getattr(tests, name)()
