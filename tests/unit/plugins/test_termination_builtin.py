"""The built-in termination policies (`builtin.termination`): each one's thresholds at their edges, the
catalogue's parameter checks, and docs/termination-policies.md naming every policy and parameter."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from crm_builtin import termination
from crm_builtin.termination import POLICIES, check_parameters
from crm_plugins import (
    TERMINATION_STRATEGIES,
    CustomerAnalytics,
    CustomerSpend,
    DisputeCount,
    FraudFlag,
    PaymentSummary,
    TerminationPolicy,
)
from crm_plugins.testing import (
    run_termination_plugin,
    sample_customer_history,
    sample_partner_termination_history,
    sample_scorecard_metrics,
    sample_subject,
)
from hypothesis import given
from hypothesis import strategies as st

NAME = "builtin.termination"
CATALOGUE = Path(__file__).resolve().parents[3] / "docs" / "termination-policies.md"
AS_OF = datetime(2026, 6, 1, tzinfo=timezone.utc)


def _customer(code: str, **fields):
    """(severity, strategy) of one customer policy on the sample customer with `fields` replaced, or None."""
    return _outcome(code, sample_customer_history(**fields), {})


def _partner(code: str, **card):
    return _outcome(code, sample_partner_termination_history(scorecard=sample_scorecard_metrics(**card)), {})


def _outcome(code: str, history, parameters: dict):
    kind = POLICIES[code].kind
    evaluation = run_termination_plugin(termination, sample_subject(kind), history,
                                        [TerminationPolicy(code=code, parameters=parameters)], plugin_name=NAME)
    assert not evaluation.degraded
    return (evaluation.severity, evaluation.strategy) if evaluation.flagged else None


def test_the_quiet_samples_are_flagged_by_no_policy():
    customer = run_termination_plugin(termination, policies=[c for c, s in POLICIES.items() if s.kind == "customer"],
                                      plugin_name=NAME)
    partner = run_termination_plugin(termination, sample_subject("partner"),
                                     policies=[c for c, s in POLICIES.items() if s.kind == "partner"],
                                     plugin_name=NAME)
    assert customer.findings == () == partner.findings and not customer.degraded and not partner.degraded


def test_a_policy_of_the_other_kind_or_an_unknown_code_finds_nothing():
    fraudster = sample_customer_history(fraud_flags=(FraudFlag(code="chargeback", reason="r", flagged_at=AS_OF),))
    assert termination.evaluate(sample_subject("partner"), fraudster, [TerminationPolicy(code="fraud")]) == []
    assert termination.evaluate(sample_subject(), fraudster, [TerminationPolicy(code="no_such")]) == []


# --- serial complainer ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("complaints", "purchases", "expected"), [
    (2, 2, None),  # one complaint per purchase, but too few complaints to judge
    (3, 11, None),  # 0.27 per purchase
    (3, 10, ("medium", "re_specify")),  # 0.30
    (5, 9, ("medium", "re_specify")),  # 0.56
    (6, 10, ("high", "re_specify")),  # 0.60
    (3, 0, ("high", "re_specify")),  # complaints without a purchase count as per one purchase
])
def test_serial_complainer_thresholds(complaints, purchases, expected):
    assert _customer("serial_complainer", complaints=complaints, purchases=purchases) == expected


def test_a_serial_complainers_finding_names_its_numbers_and_window():
    evaluation = run_termination_plugin(termination, policies=["serial_complainer"], plugin_name=NAME,
                                        complaints=4, open_complaints=1, purchases=8)
    [finding] = evaluation.findings
    assert finding.reason == ("4 complaints (1 open) on 8 purchases, 0.50 per purchase in the 365 days to "
                              "2026-06-01")
    assert finding.to_dict()["evidence"] == {"complaints": 4, "open_complaints": 1, "purchases": 8,
                                             "complaints_per_purchase": "0.5000", "since": "2025-06-01",
                                             "as_of": "2026-06-01", "window_days": 365}


# --- late payer -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("payments", "expected"), [
    (PaymentSummary(due=3, paid=3, late=3, days_late_total=30, max_days_late=10), None),  # too few due
    (PaymentSummary(due=20, paid=20, late=1, days_late_total=90, max_days_late=90), None),  # one late payment
    (PaymentSummary(due=9, paid=9, late=2, days_late_total=20, max_days_late=10), None),  # 22%
    (PaymentSummary(due=8, paid=8, late=2, days_late_total=20, max_days_late=10), ("medium", "raise_price")),
    (PaymentSummary(due=8, paid=7, late=2, unpaid_overdue=1, days_late_total=60, max_days_late=45),
     ("high", "raise_price")),  # 25% but 30 days late on average
    (PaymentSummary(due=8, paid=8, late=4, days_late_total=8, max_days_late=2), ("high", "raise_price")),  # 50%
])
def test_late_payer_thresholds(payments, expected):
    assert _customer("late_payer", payments=payments) == expected


# --- fraud ------------------------------------------------------------------------------------------------------

def _flags(*codes: str) -> tuple[FraudFlag, ...]:
    return tuple(FraudFlag(code=code, reason="reported", flagged_at=AS_OF - timedelta(days=days))
                 for days, code in enumerate(codes))


def test_fraud_one_flag_is_medium_two_are_high_and_codes_narrow_what_counts():
    assert _customer("fraud") is None
    assert _customer("fraud", fraud_flags=_flags("chargeback")) == ("medium", "terminate")
    assert _customer("fraud", fraud_flags=_flags("chargeback", "stolen_card")) == ("high", "terminate")
    only_stolen = {"codes": ["stolen_card"]}
    assert _outcome("fraud", sample_customer_history(fraud_flags=_flags("chargeback")), only_stolen) is None

    [finding] = run_termination_plugin(termination, policies=["fraud"], plugin_name=NAME,
                                       fraud_flags=_flags("stolen_card", "chargeback")).findings
    assert (finding.evidence["flags"], finding.evidence["codes"]) == (2, "chargeback, stolen_card")
    assert finding.evidence["last_flagged_at"] == "2026-06-01T00:00:00+00:00"


# --- deal seeker ------------------------------------------------------------------------------------------------

def _spend(currency: str, purchases: int, revenue: str, discounted: str) -> CustomerSpend:
    return CustomerSpend(currency=currency, purchases=purchases, revenue=Decimal(revenue), discounted_purchases=1,
                         discounted_revenue=Decimal(discounted))


@pytest.mark.parametrize(("spend", "expected"), [
    ((_spend("EUR", 4, "100", "100"),), None),  # too few purchases
    ((_spend("EUR", 5, "100", "59.99"),), None),
    ((_spend("EUR", 5, "100", "60"),), ("medium", "raise_price")),
    ((_spend("EUR", 5, "100", "90"),), ("high", "raise_price")),
    ((_spend("EUR", 20, "1000", "100"), _spend("USD", 6, "100", "95")), ("high", "raise_price")),  # worst currency
    ((_spend("EUR", 20, "0", "0"),), None),  # no revenue to share
])
def test_deal_seeker_thresholds(spend, expected):
    assert _customer("deal_seeker", spend=spend) == expected


@given(st.integers(min_value=5, max_value=500), st.decimals(min_value=1, max_value=10**6, places=2),
       st.decimals(min_value=0, max_value=1, places=4))
def test_deal_seeker_is_medium_exactly_from_the_share_and_high_from_the_high_share(purchases, revenue, share):
    discounted = (revenue * share).quantize(Decimal("0.01"))
    found = termination.deal_seeker(sample_customer_history(spend=(CustomerSpend(
        currency="EUR", purchases=purchases, revenue=revenue, discounted_revenue=discounted),)),
        termination._settings(TerminationPolicy(code="deal_seeker")))
    rate = (discounted / revenue).quantize(Decimal("0.0001"))
    expected = "high" if rate >= Decimal("0.9") else "medium" if rate >= Decimal("0.6") else None
    assert (found.severity if found else None) == expected
    if found:
        assert found.evidence["discounted_share"] == rate


# --- unprofitable -----------------------------------------------------------------------------------------------

def _row(quadrant: str | None, margin: str, cost: str) -> CustomerAnalytics:
    return CustomerAnalytics(as_of=AS_OF, currency="EUR", quadrant=quadrant, margin=Decimal(margin),
                             cost_to_serve=Decimal(cost))


@pytest.mark.parametrize(("analytics", "purchases", "expected"), [
    (None, 12, None),
    (_row("hold", "100", "100"), 12, None),  # cost equal to the margin
    (_row("hold", "100", "100.01"), 12, ("medium", "unbundle")),
    (_row("worst", "100", "10"), 12, ("medium", "unbundle")),  # the worst quadrant
    (_row("hold", "100", "200.01"), 12, ("high", "unbundle")),
    (_row("worst", "-5", "0"), 12, ("high", "unbundle")),  # a negative margin
    (_row("worst", "100", "500"), 2, None),  # too few purchases to judge
])
def test_unprofitable_thresholds(analytics, purchases, expected):
    assert _customer("unprofitable", analytics=analytics, purchases=purchases) == expected


def test_unprofitable_without_quadrants_judges_only_the_cost():
    history = sample_customer_history(analytics=_row("worst", "100", "10"))
    assert _outcome("unprofitable", history, {"quadrants": []}) is None


# --- partners ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("deliveries", "on_time", "expected"), [
    (9, 0, None),  # too few deliveries
    (20, 18, None),  # 10%
    (20, 17, ("medium", "re_specify")),  # 15%
    (20, 14, ("high", "re_specify")),  # 30%
])
def test_late_deliveries_thresholds(deliveries, on_time, expected):
    assert _partner("late_deliveries", deliveries=deliveries, on_time=on_time) == expected


@pytest.mark.parametrize(("delivered", "rejected", "expected"), [
    (9, "500", None),  # too few deliveries
    (10, "49.94", None),  # 4.99% (rates are compared as shown, to four places)
    (10, "50", ("medium", "unbundle")),  # 5% of 1000
    (10, "150", ("high", "unbundle")),
])
def test_poor_quality_thresholds(delivered, rejected, expected):
    assert _partner("poor_quality", delivered=delivered, quantity_delivered=Decimal("1000"),
                    quantity_rejected=Decimal(rejected)) == expected


@pytest.mark.parametrize(("priced", "within", "expected"), [
    (9, 0, None),  # too few priced deliveries
    (10, 9, None),  # a single breach
    (30, 28, None),  # 6.7%
    (20, 18, ("medium", "re_specify")),  # 10%
    (20, 15, ("high", "re_specify")),  # 25%
])
def test_price_breaches_thresholds(priced, within, expected):
    assert _partner("price_breaches", priced=priced, within_price=within) == expected


@pytest.mark.parametrize(("disputes", "deliveries", "parameters", "expected"), [
    ((DisputeCount(category="quality", opened=3),), 20, {}, None),
    ((DisputeCount(category="quality", opened=3, unresolved=1), DisputeCount(category="price", opened=1)), 20, {},
     ("medium", "terminate")),
    ((DisputeCount(category="quality", opened=8),), 0, {}, ("high", "terminate")),  # no deliveries: count alone
    ((DisputeCount(category="quality", opened=4),), 100, {}, None),  # 4 in 100 deliveries is rare
    ((DisputeCount(category="quality", opened=3), DisputeCount(category="price", opened=1)), 20,
     {"categories": ["quality"]}, None),
])
def test_repeated_disputes_thresholds(disputes, deliveries, parameters, expected):
    history = sample_partner_termination_history(disputes=disputes,
                                                 scorecard=sample_scorecard_metrics(deliveries=deliveries))
    assert _outcome("repeated_disputes", history, parameters) == expected


def test_a_strategy_parameter_replaces_the_default_recommendation():
    history = sample_customer_history(complaints=9, purchases=9)
    assert _outcome("serial_complainer", history, {"strategy": "terminate"}) == ("high", "terminate")


# --- the catalogue ----------------------------------------------------------------------------------------------

def test_every_policy_has_a_strategy_parameter_defaulting_to_its_recommendation_and_valid_defaults():
    assert {s.kind for s in POLICIES.values()} == {"customer", "partner"} and len(POLICIES) == 9
    for code, spec in POLICIES.items():
        assert spec.parameters["strategy"].default == spec.default_strategy in TERMINATION_STRATEGIES
        filled, errors = check_parameters(code, {})
        assert errors == {} and filled == {name: p.default for name, p in spec.parameters.items()}


@pytest.mark.parametrize(("code", "given", "errors"), [
    ("late_payer", {"lateness": 3}, {"lateness": [("unknown parameter; expected one of min_due, min_late, "
                                                   "late_rate, high_late_rate, high_average_days_late, strategy")]}),
    ("late_payer", {"min_due": True}, {"min_due": ["must be a whole number"]}),
    ("late_payer", {"min_due": 2.0}, {"min_due": ["must be a whole number"]}),
    ("late_payer", {"min_due": 0}, {"min_due": ["must be at least 1"]}),
    ("late_payer", {"late_rate": "1.5"}, {"late_rate": ["must be at most 1"]}),
    ("late_payer", {"late_rate": "lots"}, {"late_rate": ["must be a decimal number"]}),
    ("late_payer", {"late_rate": "NaN"}, {"late_rate": ["must be a decimal number"]}),
    ("late_payer", {"late_rate": "0.6"}, {"high_late_rate": ["must be at least late_rate (0.6)"]}),
    ("fraud", {"strategy": "fire"}, {"strategy": [("must be one of retain, re_specify, unbundle, raise_price, "
                                                   "terminate")]}),
    ("fraud", {"codes": "chargeback"}, {"codes": ["must be a list of non-empty strings"]}),
    ("fraud", {"codes": ["", "x"]}, {"codes": ["must be a list of non-empty strings"]}),
    ("unprofitable", {"quadrants": ["worse"]}, {"quadrants": ["'worse' is not one of best, invest, hold, worst"]}),
])
def test_check_parameters_names_each_bad_parameter(code, given, errors):
    assert check_parameters(code, given)[1] == errors


def test_check_parameters_fills_in_defaults_as_json_values():
    filled, errors = check_parameters("late_payer", {"late_rate": 0.3, "high_late_rate": Decimal("0.45"),
                                                     "min_due": None})
    assert errors == {}
    assert filled == {"min_due": 4, "min_late": 2, "late_rate": "0.3", "high_late_rate": "0.45",
                      "high_average_days_late": 30, "strategy": "raise_price"}
    assert check_parameters("fraud", {"codes": ["chargeback", "chargeback"]})[0]["codes"] == ["chargeback"]
    with pytest.raises(KeyError):
        check_parameters("no_such_policy", {})


def test_invalid_stored_parameters_fail_the_plugin_which_the_host_reports():
    evaluation = run_termination_plugin(termination, plugin_name=NAME, policies=[
        TerminationPolicy(code="fraud", parameters={"min_flags": "one"})], fraud_flags=_flags("chargeback"))
    assert [(d.code, "fraud" in d.detail) for d in evaluation.degraded] == [("plugin_error", True)]


def test_the_catalogue_page_documents_every_policy_parameter_and_default():
    text = CATALOGUE.read_text(encoding="utf-8")
    for code, spec in POLICIES.items():
        section = text[text.index(f"### `{code}`"):]
        ends = [at for at in (section.find("\n### ", 1), section.find("\n## ", 1)) if at > 0]
        section = section[:min(ends)] if ends else section  # this policy's own section only
        assert spec.default_strategy in section, code
        rows = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| `")}
        for name, parameter in spec.parameters.items():
            default = ", ".join(parameter.default) if isinstance(parameter.default, list) else parameter.default
            assert f"`{name}`" in rows and str(default) in rows[f"`{name}`"], (code, name)


def test_parameters_are_parsed_once_per_policy_object():
    policy = TerminationPolicy(code="late_payer", parameters={"late_rate": "0.3"})
    assert termination._settings(policy) is termination._settings(policy)
    assert termination._settings(policy)["late_rate"] == Decimal("0.3")
