"""The crm_score_partner hook through the host and the harness: criteria named per plugin, failures degrade."""
from __future__ import annotations

import re
import sys
import types
from decimal import Decimal
from pathlib import Path

import pytest
from crm_plugins import ScoreCriterion, hookimpl
from crm_plugins.testing import (
    make_host,
    run_score_partner,
    sample_partner,
    sample_scorecard_metrics,
    sample_scorecard_period,
)
from crm_plugins.types import criterion_problem

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "plugins.md"


class Steady:
    @hookimpl
    def crm_score_partner(self, metrics):
        return [ScoreCriterion("steady", Decimal("0.8"), 5, f"{metrics.deliveries} deliveries"),
                ScoreCriterion("local", 1, Decimal("2.5"), "same country")]


class Raises:
    @hookimpl
    def crm_score_partner(self, partner, period, metrics):
        raise RuntimeError("boom")


class ReturnsADict:
    @hookimpl
    def crm_score_partner(self, partner):
        return {"code": "x", "score": 1}


class Sneaky:
    """Builds a criterion around its own check (object.__new__), so only the host's check can catch it."""

    @hookimpl
    def crm_score_partner(self):
        criterion = object.__new__(ScoreCriterion)
        for name, value in (("code", "sneaky"), ("score", 0.5), ("weight", 1), ("reason", "a float score")):
            object.__setattr__(criterion, name, value)
        return criterion


def test_every_criterion_is_counted_with_its_plugin():
    decision = run_score_partner(Steady, plugin_name="steady")
    assert [(c.plugin, c.code, c.score, c.weight) for c in decision.criteria] == [
        ("steady", "steady", Decimal("0.8"), Decimal(5)), ("steady", "local", Decimal(1), Decimal("2.5"))]
    assert decision.criteria[0].reason == "20 deliveries" and not decision.is_degraded
    assert decision.to_dict()["criteria"][1] == {"plugin": "steady", "code": "local", "score": "1",
                                                 "weight": "2.5", "reason": "same country"}


@pytest.mark.parametrize("plugin, code", [(Raises, "plugin_error"), (ReturnsADict, "plugin_malformed_result"),
                                          (Sneaky, "plugin_malformed_result")])
def test_a_failing_plugin_is_dropped_and_reported_while_the_others_count(plugin, code):
    host = make_host(Steady, plugin, names=["steady", "bad"])
    decision = host.score_partner(sample_partner(), sample_scorecard_period(), sample_scorecard_metrics())
    assert {c.plugin for c in decision.criteria} == {"steady"}
    assert [d.to_dict() for d in decision.degraded] == [{"plugin": "bad", "hook": "crm_score_partner", "code": code}]


@pytest.mark.parametrize("fields, problem", [
    (("", 1, 1, "r"), "code"),
    (("c", 0.5, 1, "r"), "score"),
    (("c", True, 1, "r"), "score"),
    (("c", Decimal("1.01"), 1, "r"), "score"),
    (("c", Decimal("-0.1"), 1, "r"), "score"),
    (("c", Decimal("NaN"), 1, "r"), "score"),
    (("c", 1, -1, "r"), "weight"),
    (("c", 1, 1001, "r"), "weight"),
    (("c", 1, 2.0, "r"), "weight"),
    (("c", 1, 1, None), "reason"),
])
def test_a_malformed_criterion_fails_where_it_is_built(fields, problem):
    with pytest.raises(TypeError, match=problem):
        ScoreCriterion(*fields)
    assert criterion_problem({"code": "c"}) == "expected ScoreCriterion, got dict"


def _guide_examples() -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    start = text.index("## crm_score_partner(")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```py\n(.*?)```", text[start:end if end != -1 else None], re.DOTALL)


def test_the_guide_example_and_its_tests_run(monkeypatch):
    examples = _guide_examples()
    (plugin_code,) = [code for code in examples if "@hookimpl" in code]
    (test_code,) = [code for code in examples if "def test_" in code]
    plugin = types.ModuleType("certified")
    exec(compile(plugin_code, "docs/plugins.md:certified", "exec"), plugin.__dict__)  # noqa: S102 - our guide
    assert run_score_partner(plugin, plugin_name="certified").criteria[0].code == "iso_9001"

    monkeypatch.setitem(sys.modules, "certified", plugin)
    tests = types.ModuleType("guide_score_partner_tests")
    exec(compile(test_code, "docs/plugins.md:tests", "exec"), tests.__dict__)  # noqa: S102
    names = [n for n in vars(tests) if n.startswith("test_")]
    assert len(names) == 2
    for name in names:
        getattr(tests, name)()
