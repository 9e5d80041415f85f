"""The crm_evaluate_termination hook: findings as values, the host's rules (only the plugins a policy set names,
each with its own policies), isolation, the harness and the guide's example."""
from __future__ import annotations

import re
import sys
import types
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from crm_plugins import (
    AppliedFinding,
    Finding,
    PluginFailure,
    TerminationEvaluation,
    TerminationPolicy,
    hookimpl,
)
from crm_plugins.testing import (
    make_host,
    run_termination_plugin,
    sample_customer_history,
    sample_partner_termination_history,
    sample_subject,
)
from crm_plugins.types import finding_problem

from services.common.plugins import build_plugin_host

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "plugins.md"
HOOK = "crm_evaluate_termination"


class Recorder:
    """Finds one medium finding per policy it is given and remembers what it was given."""

    def __init__(self, strategy: str = "re_specify") -> None:
        self.strategy = strategy
        self.seen: list[tuple] = []

    @hookimpl
    def crm_evaluate_termination(self, subject, history, policies):
        self.seen.append((subject.kind, tuple(p.code for p in policies)))
        return [Finding(p.code, p.parameters.get("severity", "medium"), self.strategy, f"{p.code} applies",
                        {"complaints": history.complaints}) for p in policies]


class Raises:
    @hookimpl
    def crm_evaluate_termination(self, history):
        raise RuntimeError("database password is hunter2")


class ForeignCode:
    @hookimpl
    def crm_evaluate_termination(self, policies):
        return [Finding(policies[0].code, "low", "retain", "mine"), Finding("someone_elses", "high", "terminate", "")]


class ReturnsADict:
    @hookimpl
    def crm_evaluate_termination(self):
        return {"code": "x"}


class FloatEvidence:
    """Builds a finding around its own check (object.__new__), so only the host's check can catch it."""

    @hookimpl
    def crm_evaluate_termination(self, policies):
        finding = object.__new__(Finding)
        for name, value in (("code", policies[0].code), ("severity", "high"), ("strategy", "terminate"),
                            ("reason", ""), ("evidence", {"rate": 0.5})):
            object.__setattr__(finding, name, value)
        return finding


def _policies(*codes: str, **parameters) -> tuple[TerminationPolicy, ...]:
    return tuple(TerminationPolicy(code=code, parameters=parameters) for code in codes)


# --- values ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "problem"), [
    (("", "medium", "retain", "r"), "code must be a non-empty string"),
    (("x", "severe", "retain", "r"), "severity must be one of low, medium, high"),
    (("x", "high", "fire", "r"), "strategy must be one of retain, re_specify"),
    (("x", "high", ["terminate"], "r"), "strategy must be one of"),
    (("x", "high", "terminate", None), "reason must be a string"),
    (("x", "high", "terminate", "r", {"rate": 0.5}), "evidence 'rate' must be a str, int, bool, None or finite"),
    (("x", "high", "terminate", "r", {"rate": Decimal("NaN")}),
     "evidence 'rate' must be a str, int, bool, None or finite Decimal, got Decimal"),
    (("x", "high", "terminate", "r", {"": 1}), "evidence names must be non-empty strings"),
    (("x", "high", "terminate", "r", {"days": [1, 2]}), "evidence 'days' must be"),
    (("x", "high", "terminate", "r", "evidence"), "evidence must be a mapping"),
])
def test_a_malformed_finding_fails_where_it_is_built(fields, problem):
    with pytest.raises(TypeError, match=re.escape(f"invalid Finding: {problem}")):
        Finding(*fields)


def test_a_finding_keeps_its_evidence_read_only_and_serialises_decimals_as_strings():
    evidence = {"late_rate": Decimal("0.3750"), "late": 3, "cleared": False, "note": None}
    finding = Finding("late_payer", "medium", "raise_price", "3 of 8 late", evidence)
    evidence["late"] = 99

    assert finding.evidence["late"] == 3 and finding_problem(finding) is None
    with pytest.raises(TypeError):
        finding.evidence["late"] = 4  # type: ignore[index]
    applied = AppliedFinding("p", finding.code, finding.severity, finding.strategy, finding.reason, finding.evidence)
    assert applied.to_dict()["evidence"] == {"late_rate": "0.3750", "late": 3, "cleared": False, "note": None}


def _found(severity: str, strategy: str, code: str = "c") -> AppliedFinding:
    return AppliedFinding("p", code, severity, strategy, "", {})


@pytest.mark.parametrize(("findings", "severity", "strategy"), [
    ((), None, None),
    ((_found("low", "terminate"), _found("medium", "retain")), "medium", "retain"),
    ((_found("high", "re_specify"), _found("high", "raise_price"), _found("medium", "terminate")),
     "high", "raise_price"),
    ((_found("medium", "unbundle"), _found("medium", "re_specify")), "medium", "unbundle"),
])
def test_the_subjects_severity_is_the_highest_and_its_strategy_the_strongest_of_that_severity(
        findings, severity, strategy):
    evaluation = TerminationEvaluation(findings)

    assert (evaluation.flagged, evaluation.severity, evaluation.strategy) == (bool(findings), severity, strategy)
    assert evaluation.to_dict()["severity"] == severity and evaluation.to_dict()["strategy"] == strategy


# --- the host ---------------------------------------------------------------------------------------------------

def test_only_the_plugins_the_set_names_are_called_each_with_only_its_own_policies():
    mine, theirs, idle = Recorder(), Recorder("terminate"), Recorder()
    host = make_host(mine, theirs, idle, names=["mine", "theirs", "idle"])

    evaluation = host.evaluate_termination(sample_subject(), sample_customer_history(complaints=4), {
        "mine": _policies("a", "b"), "theirs": [TerminationPolicy(code="c", parameters={"severity": "high"})]})

    assert (mine.seen, theirs.seen, idle.seen) == ([("customer", ("a", "b"))], [("customer", ("c",))], [])
    assert [(f.plugin, f.code, f.severity, f.strategy) for f in evaluation.findings] == [
        ("mine", "a", "medium", "re_specify"), ("mine", "b", "medium", "re_specify"),
        ("theirs", "c", "high", "terminate")]
    assert evaluation.findings[0].evidence == {"complaints": 4}
    assert (evaluation.severity, evaluation.strategy, evaluation.is_degraded) == ("high", "terminate", False)


def test_a_plugin_with_an_empty_list_of_policies_is_not_called():
    recorder = Recorder()
    host = make_host(recorder, names=["recorder"])

    assert host.evaluate_termination(sample_subject(), sample_customer_history(), {"recorder": ()}) == \
        TerminationEvaluation()
    assert recorder.seen == []


@pytest.mark.parametrize(("plugin", "code", "detail"), [
    (Raises, "plugin_error", "RuntimeError"),
    (ForeignCode, "plugin_malformed_result", "finding code 'someone_elses' is not one of the plugin's policies"),
    (ReturnsADict, "plugin_malformed_result", "expected a Finding, a list of them or None, got dict"),
    (FloatEvidence, "plugin_malformed_result", "evidence 'rate' must be"),
])
def test_a_failing_plugin_is_dropped_whole_and_reported_while_the_others_count(plugin, code, detail):
    good = Recorder()
    host = make_host(good, plugin, names=["good", "bad"])

    evaluation = host.evaluate_termination(sample_subject(), sample_customer_history(),
                                           {"good": _policies("a"), "bad": _policies("mine")})

    assert [(f.plugin, f.code) for f in evaluation.findings] == [("good", "a")]
    [failure] = evaluation.degraded
    assert failure.to_dict() == {"plugin": "bad", "hook": HOOK, "code": code}
    assert detail in failure.detail
    assert "hunter2" not in str(evaluation.to_dict())


def test_a_policy_naming_a_plugin_that_is_not_loaded_is_reported_unavailable():
    host = make_host(Recorder(), names=["here"])

    evaluation = host.evaluate_termination(sample_subject(), sample_customer_history(),
                                           {"gone": _policies("x"), "here": _policies("a")})

    assert [f.code for f in evaluation.findings] == ["a"]
    assert evaluation.degraded == (PluginFailure("gone", HOOK, "plugin_unavailable"),)
    assert evaluation.degraded[0].detail == "not loaded"


def test_the_services_budgeted_host_applies_the_same_rules_on_its_lanes():
    host = build_plugin_host(include_builtins=False, include_entry_points=False, timeout_ms=2000)
    recorder = Recorder()
    host.register(recorder, name="recorder")
    host.register(ForeignCode(), name="foreign")

    evaluation = host.evaluate_termination(sample_subject("partner"), sample_customer_history(), {
        "recorder": _policies("a"), "foreign": _policies("f"), "missing": _policies("m")})

    assert [(f.plugin, f.code) for f in evaluation.findings] == [("recorder", "a")]
    assert [(d.plugin, d.code) for d in evaluation.degraded] == [
        ("foreign", "plugin_malformed_result"), ("missing", "plugin_unavailable")]
    assert recorder.seen == [("partner", ("a",))]


# --- the harness ------------------------------------------------------------------------------------------------

def test_the_harness_runs_one_plugin_on_the_sample_of_the_subjects_kind():
    recorder = Recorder()

    customer = run_termination_plugin(recorder, policies=["a", TerminationPolicy(code="b")], complaints=7)
    partner = run_termination_plugin(recorder, sample_subject("partner"), policies=["c"])

    assert [f.evidence["complaints"] for f in customer.findings] == [7, 7]
    assert {f.plugin for f in customer.findings} == {"Recorder"}
    assert recorder.seen == [("customer", ("a", "b")), ("partner", ("c",))]
    # The partner's sample history has no complaints: the plugin raised, exactly as it would in the service.
    assert not partner.flagged and [(d.code, d.detail.split(":")[0]) for d in partner.degraded] == [
        ("plugin_error", "AttributeError")]
    with pytest.raises(ValueError, match="at least one policy"):
        run_termination_plugin(recorder)


def test_the_samples_are_quiet_and_replace_single_fields():
    customer = sample_customer_history(complaints=5)
    partner = sample_partner_termination_history()

    assert (customer.complaints, customer.purchases, customer.payments.late, customer.fraud_flags) == (5, 12, 0, ())
    assert customer.as_of == datetime(2026, 6, 1, tzinfo=timezone.utc)
    assert (partner.late_deliveries, partner.price_breaches, partner.disputes_opened) == (3, 1, 1)
    assert sample_subject("partner").kind == "partner" and sample_subject(name="X").name == "X"


# --- the guide's crm_evaluate_termination examples run and their tests pass ------------------------------------

def _guide_examples() -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    start = text.index(f"## {HOOK}(")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```py\n(.*?)```", text[start:end if end != -1 else None], re.DOTALL)


def test_the_guide_termination_examples_run_and_their_own_tests_pass(monkeypatch):
    examples = _guide_examples()
    (plugin_code,) = [code for code in examples if "@hookimpl" in code]
    (test_code,) = [code for code in examples if "def test_" in code]
    plugin = types.ModuleType("serial_returner")
    exec(compile(plugin_code, "docs/plugins.md:serial_returner", "exec"), plugin.__dict__)  # noqa: S102 - our guide

    # Next to the built-in, on the services' host: each plugin gets only its own policy.
    from crm_builtin import termination

    host = build_plugin_host(include_builtins=False, include_entry_points=False)
    host.register(termination, name="builtin.termination")
    host.register(plugin, name="serial_returner")
    [eur] = sample_customer_history().spend
    history = sample_customer_history(complaints=9, spend=(
        type(eur)(currency="EUR", purchases=12, revenue=Decimal("1000"), returns=4, returned_amount=Decimal("600")),))
    together = host.evaluate_termination(sample_subject(), history, {
        "builtin.termination": _policies("serial_complainer"), "serial_returner": _policies("serial_returner")})
    assert [(f.plugin, f.code) for f in together.findings] == [
        ("builtin.termination", "serial_complainer"), ("serial_returner", "serial_returner")]

    monkeypatch.setitem(sys.modules, "serial_returner", plugin)
    tests = types.ModuleType("guide_termination_tests")
    exec(compile(test_code, "docs/plugins.md:tests", "exec"), tests.__dict__)  # noqa: S102
    names = [n for n in vars(tests) if n.startswith("test_")]
    assert len(names) == 2
    for name in names:
        getattr(tests, name)()
