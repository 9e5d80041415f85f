"""The `crm_loyalty_points` hook: the built-in base points, the host's isolation, the harness and the guide."""
from __future__ import annotations

import logging
import re
import sys
import types
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from crm_builtin import loyalty_points
from crm_plugins import PointAward, PointsDecision, ScoreFactor, hookimpl
from crm_plugins.testing import (
    make_host,
    run_loyalty_points,
    sample_program,
    sample_purchase,
)

from services.common.plugins import PluginError, build_plugin_host

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "plugins.md"


class Fixed:
    """A fake plugin that always awards the same points."""

    def __init__(self, points: int, code: str = "fixed"):
        self.points, self.code = points, code

    @hookimpl
    def crm_loyalty_points(self, purchase, program):
        return PointAward(self.code, self.points, f"always {self.points}")


class Raising:
    """A fake plugin with a bug."""

    @hookimpl
    def crm_loyalty_points(self, purchase):
        raise ZeroDivisionError("tier multiplier")


class Returning:
    """A fake plugin that returns whatever it is given."""

    def __init__(self, result):
        self.result = result

    @hookimpl
    def crm_loyalty_points(self, program):
        return self.result


def forged_award(code, points, reason) -> PointAward:
    """An award that skipped its own validation, as a careless plugin could build one."""
    award = object.__new__(PointAward)
    for name, value in (("code", code), ("points", points), ("reason", reason)):
        object.__setattr__(award, name, value)
    return award


# --- the built-in -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("amount, rate, points", [
    ("42.50", "1", 42),
    ("42.99", "1", 42),
    ("0.99", "1", 0),
    ("10.00", "2.5", 25),
    ("3.3333", "3", 9),
    ("100", "0", 0),
    ("999999999999.9999", "1", 999999999999),
])
def test_base_points_are_the_amount_times_the_rate_rounded_down(amount, rate, points):
    decision = run_loyalty_points(loyalty_points, amount=Decimal(amount),
                                  program=sample_program(points_per_unit=Decimal(rate)))

    assert [(f.plugin, f.code, f.points) for f in decision.factors] == [("loyalty_points", "base_points", points)]
    assert decision.points == points and not decision.degraded


def test_the_base_points_reason_names_the_amount_the_rate_and_the_rounding():
    (award,) = run_loyalty_points(loyalty_points, amount=Decimal("42.5000")).factors

    assert award.reason == "42.5 EUR at 1 point(s) per EUR = 42 points (rounded down)"


def test_decimal_arithmetic_never_loses_a_point_to_floats():
    # 0.1 + 0.2 style errors would give 29 here with floats (0.3 * 100 = 29.999...).
    award = loyalty_points.base_points(sample_purchase(amount=Decimal("0.3")), sample_program(points_per_unit=Decimal(100)))

    assert award.points == 30


def test_a_purchase_in_another_currency_earns_no_base_points_and_says_why():
    award = loyalty_points.base_points(sample_purchase(currency="USD"), sample_program())

    assert award.points == 0 and "USD" in award.reason and "EUR" in award.reason


def test_the_builtin_is_loaded_by_the_services_as_builtin_loyalty_points():
    host = build_plugin_host(include_entry_points=False)

    decision = host.loyalty_points(sample_purchase(), sample_program())

    assert [(f.plugin, f.code, f.points) for f in decision.factors] == [("builtin.loyalty_points", "base_points", 42)]


# --- the host: contribute, isolate, explain -----------------------------------------------------------------

def test_every_plugin_contributes_and_the_points_add_up():
    host = make_host(loyalty_points, Fixed(10, "birthday"), names=["base", "birthday_bonus"])

    decision = host.loyalty_points(sample_purchase(), sample_program())

    assert decision.points == 52
    assert [(f.plugin, f.code) for f in decision.factors] == [("base", "base_points"), ("birthday_bonus", "birthday")]


def test_penalties_reduce_the_points_but_never_below_zero():
    host = make_host(Fixed(5), Fixed(-50, "returns_abuse"), names=["plus", "minus"])

    assert host.loyalty_points(sample_purchase(), sample_program()).points == 0


def test_a_raising_plugin_is_reported_degraded_and_the_others_still_count(caplog):
    host = make_host(Fixed(7), Raising(), names=["steady", "buggy"])

    with caplog.at_level(logging.ERROR, logger="crm.plugins"):
        decision = host.loyalty_points(sample_purchase(), sample_program())

    assert decision.points == 7 and decision.is_degraded
    (failure,) = decision.degraded
    assert (failure.plugin, failure.hook) == ("buggy", "crm_loyalty_points")
    assert failure.code == "plugin_error" and "ZeroDivisionError: tier multiplier" in failure.detail
    assert any(getattr(r, "plugin", None) == "buggy" for r in caplog.records)


@pytest.mark.parametrize("result, problem", [
    ({"code": "x", "points": 3}, "expected a PointAward"),
    (ScoreFactor("lead_factor", 3, "wrong hook's type"), "got ScoreFactor"),
    ([PointAward("ok", 1, "fine"), "nope"], "expected PointAward, got str"),
    (forged_award("float", 2.5, "half points"), "points must be an int"),
    (forged_award("bool", True, "a boolean"), "points must be an int"),
    (forged_award("", 3, "no code"), "code must be a non-empty string"),
    (forged_award("huge", 10**16, "overflow"), "points must lie within"),
])
def test_a_malformed_award_drops_that_plugins_whole_contribution(result, problem):
    host = make_host(Fixed(4), Returning(result), names=["steady", "odd"])

    decision = host.loyalty_points(sample_purchase(), sample_program())

    assert decision.points == 4
    assert [f.plugin for f in decision.factors] == ["steady"]
    (failure,) = decision.degraded
    assert (failure.plugin, failure.code) == ("odd", "plugin_malformed_result") and problem in failure.detail


def test_none_and_an_empty_list_mean_nothing_to_add():
    for result in (None, [], ()):
        decision = run_loyalty_points(Returning(result))
        assert decision == PointsDecision(points=0)


def test_building_an_invalid_award_fails_inside_the_plugin_that_builds_it():
    with pytest.raises(TypeError, match="points must be an int"):
        PointAward("half", 0.5, "not whole")


def test_a_misspelt_loyalty_hook_is_rejected_at_start_up():
    class Misspelt:
        @hookimpl
        def crm_loyalty_point(self, purchase):
            return None

    with pytest.raises(PluginError, match="did you mean 'crm_loyalty_points'"):
        make_host(Misspelt())


def test_an_implementation_asking_for_an_unknown_argument_is_rejected():
    class Greedy:
        @hookimpl
        def crm_loyalty_points(self, purchase, member_tier):
            return None

    with pytest.raises(PluginError):
        make_host(Greedy())


def test_the_harness_overrides_sample_fields_and_keeps_inputs_frozen():
    purchase = sample_purchase(amount=Decimal(10), external_id=None)

    assert purchase.amount == Decimal(10) and purchase.currency == "EUR"
    assert purchase.occurred_at == datetime(2026, 3, 14, 10, 30, tzinfo=timezone.utc)
    with pytest.raises(AttributeError):
        purchase.amount = Decimal(1)  # type: ignore[misc]


# --- the guide's crm_loyalty_points examples run and their tests pass ------------------------------------------

def _loyalty_examples() -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index("## crm_loyalty_points("):]
    return re.findall(r"```py\n(.*?)```", section, re.DOTALL)


def test_the_guide_loyalty_examples_run_and_their_own_tests_pass(monkeypatch):
    examples = _loyalty_examples()
    (plugin_code,) = [code for code in examples if "@hookimpl" in code]
    (test_code,) = [code for code in examples if "def test_" in code]
    plugin = types.ModuleType("weekend_bonus")
    exec(compile(plugin_code, "docs/plugins.md:weekend_bonus", "exec"), plugin.__dict__)  # noqa: S102 - our guide

    host = build_plugin_host(include_entry_points=False)
    host.register(plugin, name="weekend_bonus")
    together = host.loyalty_points(sample_purchase(), sample_program())
    assert [(f.code, f.points) for f in together.factors] == [("base_points", 42), ("weekend_bonus", 42)]

    monkeypatch.setitem(sys.modules, "weekend_bonus", plugin)
    tests = types.ModuleType("guide_loyalty_tests")
    exec(compile(test_code, "docs/plugins.md:tests", "exec"), tests.__dict__)  # noqa: S102
    names = [n for n in vars(tests) if n.startswith("test_")]
    assert len(names) == 2
    for name in names:
        getattr(tests, name)()
