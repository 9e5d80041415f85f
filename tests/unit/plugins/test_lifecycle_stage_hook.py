"""The `crm_lifecycle_stage` decide hook: the first valid answer wins, failures are passed over, the guide runs."""
from __future__ import annotations

import logging
import re
import sys
import time
import types
from datetime import datetime, timezone
from pathlib import Path

import pytest
from crm_plugins import hookimpl
from crm_plugins.host import PluginHost
from crm_plugins.testing import make_host, run_lifecycle_stage, sample_customer
from crm_plugins.types import LIFECYCLE_STAGES, StageDecision

from services.common.plugin_calls import BudgetedPluginHost
from services.common.plugins import PluginError
from services.contacts.analytics.params import STAGES

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "plugins.md"


class Says:
    """A fake plugin that answers every customer with the same thing."""

    def __init__(self, answer):
        self.answer = answer

    @hookimpl
    def crm_lifecycle_stage(self, customer, stage):
        return self.answer


class Raising:
    @hookimpl
    def crm_lifecycle_stage(self, customer):
        raise KeyError("segment table")


class Slow:
    def __init__(self, seconds: float):
        self.seconds = seconds

    @hookimpl
    def crm_lifecycle_stage(self, stage):
        time.sleep(self.seconds)
        return "loyal"


def test_the_plugin_api_knows_the_stages_the_analytics_compute():
    assert LIFECYCLE_STAGES == STAGES


def test_without_an_answer_the_rules_stage_stands():
    decision = run_lifecycle_stage(Says(None), stage="general")

    assert decision == StageDecision("general", "rules")
    assert not decision.is_degraded


def test_a_plugin_answer_decides_and_names_the_plugin():
    decision = run_lifecycle_stage(Says("loyal"), stage="general", plugin_name="vip")

    assert (decision.stage, decision.source) == ("loyal", "vip")
    assert decision.to_dict() == {"stage": "loyal", "source": "vip", "degraded": []}


def test_the_last_registered_plugin_is_asked_first_as_in_pluggy():
    host = make_host(Says("loyal"), Says(None), Says("lapsed"), names=["first", "silent", "last"])

    decision = host.lifecycle_stage(sample_customer(), "general")

    assert (decision.stage, decision.source) == ("lapsed", "last")


def test_the_first_answering_plugin_wins_over_plugins_asked_later():
    host = make_host(Says("loyal"), Says(None), names=["earlier", "later_silent"])

    assert host.lifecycle_stage(sample_customer(), "new").source == "earlier"


@pytest.mark.parametrize("answer, problem", [
    ("platinum", "unknown stage 'platinum'"),
    ("Loyal", "unknown stage 'Loyal'"),
    (3, "got int"),
    (["loyal"], "got list"),
])
def test_a_malformed_answer_is_passed_over_and_reported(answer, problem, caplog):
    host = make_host(Says("repeater"), Says(answer), names=["steady", "odd"])

    with caplog.at_level(logging.ERROR, logger="crm.plugins"):
        decision = host.lifecycle_stage(sample_customer(), "general")

    assert (decision.stage, decision.source) == ("repeater", "steady")
    (failure,) = decision.degraded
    assert (failure.plugin, failure.hook, failure.code) == ("odd", "crm_lifecycle_stage", "plugin_malformed_result")
    assert problem in failure.detail
    assert any(getattr(r, "plugin", None) == "odd" for r in caplog.records)


def test_a_raising_plugin_degrades_the_decision_and_the_rules_stage_stands():
    decision = run_lifecycle_stage(Raising(), stage="new", plugin_name="buggy")

    assert (decision.stage, decision.source) == ("new", "rules")
    (failure,) = decision.degraded
    assert (failure.plugin, failure.code) == ("buggy", "plugin_error") and "segment table" in failure.detail


def test_a_plugin_past_its_time_budget_is_passed_over():
    host = BudgetedPluginHost(timeout=0.05)
    host.register(Slow(1.0), name="slow")
    host.check()

    decision = host.lifecycle_stage(sample_customer(), "new")

    assert (decision.stage, decision.source) == ("new", "rules")
    assert [(f.plugin, f.code) for f in decision.degraded] == [("slow", "plugin_timeout")]


def test_a_host_without_implementations_says_so_and_keeps_the_stage():
    host = PluginHost()

    assert not host.has_implementations("crm_lifecycle_stage")
    assert host.lifecycle_stage(sample_customer(), "prospect") == StageDecision("prospect")
    assert make_host(Says(None)).has_implementations("crm_lifecycle_stage")


def test_a_misspelt_stage_hook_is_rejected_at_start_up():
    class Misspelt:
        @hookimpl
        def crm_lifecycle_stages(self, customer):
            return None

    with pytest.raises(PluginError, match="did you mean 'crm_lifecycle_stage'"):
        make_host(Misspelt())


def test_the_sample_customer_is_frozen_and_counts_days_since_the_last_purchase():
    customer = sample_customer(last_purchase_at=datetime(2026, 5, 1, 12, tzinfo=timezone.utc))

    assert customer.days_since_last_purchase == 30
    assert sample_customer(purchase_count=0, last_purchase_at=None).days_since_last_purchase is None
    with pytest.raises(AttributeError):
        customer.purchase_count = 1  # type: ignore[misc]


# --- the guide's crm_lifecycle_stage examples run and their tests pass -----------------------------------------

def _stage_examples() -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index("## crm_lifecycle_stage("):]
    section = section[:section.find("\n## ", 1)]  # up to the next hook's section
    return re.findall(r"```py\n(.*?)```", section, re.DOTALL)


def test_the_guide_stage_examples_run_and_their_own_tests_pass(monkeypatch):
    examples = _stage_examples()
    (plugin_code,) = [code for code in examples if "@hookimpl" in code]
    (test_code,) = [code for code in examples if "def test_" in code]
    plugin = types.ModuleType("patient_lapse")
    exec(compile(plugin_code, "docs/plugins.md:patient_lapse", "exec"), plugin.__dict__)  # noqa: S102 - our guide

    kept = run_lifecycle_stage(plugin, stage="lapsed", purchase_count=30, plugin_name="patient_lapse")
    assert (kept.stage, kept.source) == ("loyal", "patient_lapse")

    monkeypatch.setitem(sys.modules, "patient_lapse", plugin)
    tests = types.ModuleType("guide_stage_tests")
    exec(compile(test_code, "docs/plugins.md:tests", "exec"), tests.__dict__)  # noqa: S102
    names = [n for n in vars(tests) if n.startswith("test_")]
    assert len(names) == 2
    for name in names:
        getattr(tests, name)()
