"""The plugin host: discovery by route, disabling, isolation of failures, start-up checks, the test harness."""
from __future__ import annotations

import json
import logging
import textwrap

import pytest
from crm_plugins import LeadInput, PluginFailure, ScoreDecision, ScoreFactor, hookimpl
from crm_plugins.testing import make_host, run_score_lead, sample_lead

from services.common.plugins import PluginError, build_plugin_host
from services.common.settings import from_env

LEAD = LeadInput(email="ada@engines.example")


def write_plugin(directory, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")


FUNCTION_PLUGIN = """
    from crm_plugins import ScoreFactor, hookimpl

    @hookimpl
    def crm_score_lead(lead):
        return ScoreFactor("from_functions", 7, f"saw {lead.email}")
"""

CLASS_PLUGIN = """
    from crm_plugins import ScoreFactor, hookimpl

    class Bonus:
        def __init__(self):
            self.points = 3

        @hookimpl
        def crm_score_lead(self, lead):
            return [ScoreFactor("from_class", self.points, "a class plugin")]

    plugin = Bonus
"""


def only_local(tmp_path, **kwargs):
    """A host with nothing but the plugins in tmp_path."""
    return build_plugin_host(str(tmp_path), include_builtins=False, include_entry_points=False, **kwargs)


class Fixed:
    """A fake plugin that contributes one fixed factor."""

    def __init__(self, points: int, code: str = "fixed"):
        self.points, self.code = points, code

    @hookimpl
    def crm_score_lead(self, lead):
        return ScoreFactor(self.code, self.points, f"always {self.points}")


class Raising:
    """A fake plugin with a bug."""

    @hookimpl
    def crm_score_lead(self, lead):
        raise KeyError("company_size")


class Returning:
    """A fake plugin that returns whatever it is given."""

    def __init__(self, result):
        self.result = result

    @hookimpl
    def crm_score_lead(self, lead):
        return self.result


def forged_factor(code, points, reason) -> ScoreFactor:
    """A ScoreFactor that skipped its own validation, as a careless plugin could build one."""
    factor = object.__new__(ScoreFactor)
    for attr, value in (("code", code), ("points", points), ("reason", reason)):
        object.__setattr__(factor, attr, value)
    return factor


# --- discovery ----------------------------------------------------------------------------------------------

def test_a_directory_module_of_plain_functions_is_loaded_under_its_file_name(tmp_path):
    write_plugin(tmp_path, "team_rules", FUNCTION_PLUGIN)

    host = only_local(tmp_path)

    assert host.list_plugins() == [{"name": "team_rules", "source": "directory", "origin": str(tmp_path / "team_rules.py"),
                                    "hooks": ["crm_score_lead"], "available": True}]
    decision = host.score_lead(LEAD)
    assert [(f.plugin, f.code, f.points, f.reason) for f in decision.factors] == [
        ("team_rules", "from_functions", 7, "saw ada@engines.example")]


def test_a_directory_file_exposing_a_class_as_plugin_is_instantiated_and_loaded(tmp_path):
    write_plugin(tmp_path, "bonus", CLASS_PLUGIN)

    decision = only_local(tmp_path).score_lead(LEAD)

    assert [(f.plugin, f.code, f.points) for f in decision.factors] == [("bonus", "from_class", 3)]


def test_a_directory_file_that_fails_to_import_is_reported_and_the_others_still_load(tmp_path):
    write_plugin(tmp_path, "broken", "import no_such_module_for_crm\n")
    write_plugin(tmp_path, "team_rules", FUNCTION_PLUGIN)

    host = only_local(tmp_path)

    assert [p["name"] for p in host.list_plugins()] == ["team_rules"]
    (error,) = host.errors
    assert (error["name"], error["source"]) == ("broken", "directory")
    assert error["code"] == "plugin_load_failed" and "no_such_module_for_crm" in error["error"]


def test_files_starting_with_an_underscore_are_not_plugins(tmp_path):
    write_plugin(tmp_path, "_helpers", "raise RuntimeError('not a plugin')\n")

    host = only_local(tmp_path)

    assert host.list_plugins() == [] and host.errors == []


def test_a_missing_plugins_directory_stops_the_build(tmp_path):
    with pytest.raises(PluginError, match="not a directory"):
        only_local(tmp_path / "nope")


def test_the_builtin_policies_are_registered_as_ordinary_plugins():
    host = build_plugin_host(include_entry_points=False)

    assert host.list_plugins() == [
        {"name": "builtin.lead_scoring", "source": "builtin", "origin": "crm_builtin.lead_scoring",
         "hooks": ["crm_score_lead"], "available": True},
        {"name": "builtin.loyalty_points", "source": "builtin", "origin": "crm_builtin.loyalty_points",
         "hooks": ["crm_loyalty_points"], "available": True},
    ]
    assert {f.plugin for f in host.score_lead(sample_lead()).factors} == {"builtin.lead_scoring"}


def test_the_installed_example_package_is_discovered_through_its_entry_point():
    # The Makefile installs plugins/examples/crm_example_scoring; without it this must fail, not skip.
    host = build_plugin_host(include_builtins=False)

    listed = {p["name"]: p for p in host.list_plugins()}
    assert "example_scoring" in listed, (
        "crm-example-scoring is not installed: pip install -e plugins/examples/crm_example_scoring")
    assert listed["example_scoring"]["source"] == "entry_point"
    assert listed["example_scoring"]["origin"].startswith("crm-example-scoring ")
    decision = host.score_lead(LeadInput(email="ops@rocket.io"))
    assert ("example_scoring", "tech_company") in {(f.plugin, f.code) for f in decision.factors}


def test_a_directory_file_cannot_take_the_name_of_an_installed_plugin(tmp_path):
    write_plugin(tmp_path, "example_scoring", FUNCTION_PLUGIN)

    host = build_plugin_host(str(tmp_path), include_builtins=False)

    assert [p["source"] for p in host.list_plugins() if p["name"] == "example_scoring"] == ["entry_point"]
    assert [(e["name"], e["source"], e["code"]) for e in host.errors] == [
        ("example_scoring", "directory", "plugin_name_taken")]


def test_settings_from_the_environment_choose_the_directory_and_the_disabled_plugins(tmp_path):
    write_plugin(tmp_path, "team_rules", FUNCTION_PLUGIN)
    write_plugin(tmp_path, "bonus", CLASS_PLUGIN)
    settings = from_env("leads", {"CRM_PLUGINS_DIR": str(tmp_path),
                                  "CRM_PLUGINS_DISABLED": "bonus,builtin.lead_scoring,builtin.loyalty_points"}, require_secret=False)

    host = build_plugin_host(settings.plugins_dir, disabled=settings.plugins_disabled, include_entry_points=False)

    assert [p["name"] for p in host.list_plugins()] == ["team_rules"]


# --- disabling ----------------------------------------------------------------------------------------------

def test_a_disabled_plugin_is_not_loaded_whichever_route_it_comes_by(tmp_path):
    write_plugin(tmp_path, "team_rules", FUNCTION_PLUGIN)
    write_plugin(tmp_path, "bonus", CLASS_PLUGIN)

    host = build_plugin_host(str(tmp_path), disabled=["builtin.lead_scoring", "builtin.loyalty_points",
                                                       "example_scoring", "bonus"])

    assert [p["name"] for p in host.list_plugins()] == ["team_rules"]
    assert sorted(host.disabled) == ["bonus", "builtin.lead_scoring", "builtin.loyalty_points", "example_scoring"]
    assert {f.plugin for f in host.score_lead(sample_lead()).factors} == {"team_rules"}


def test_a_disabled_file_is_not_even_imported(tmp_path):
    write_plugin(tmp_path, "broken", "raise RuntimeError('imported although disabled')\n")

    host = only_local(tmp_path, disabled=["broken"])

    assert host.errors == [] and host.list_plugins() == []


# --- isolation ----------------------------------------------------------------------------------------------

def test_a_raising_plugin_is_reported_degraded_and_others_still_count(caplog):
    host = make_host(Fixed(40), Raising(), Fixed(2, "small"), names=["steady", "buggy", "tiny"])

    with caplog.at_level(logging.ERROR, logger="crm.plugins"):
        decision = host.score_lead(LEAD)

    assert decision.score == 42
    assert [(f.plugin, f.code) for f in decision.factors] == [("steady", "fixed"), ("tiny", "small")]
    (failure,) = decision.degraded
    assert (failure.plugin, failure.hook, failure.code) == ("buggy", "crm_score_lead", "plugin_error")
    assert failure.detail == "KeyError: 'company_size'"
    assert decision.is_degraded
    assert any("buggy" in r.getMessage() and r.exc_info for r in caplog.records)


@pytest.mark.parametrize("result, complaint", [
    ({"code": "x", "points": 5}, "got dict"),
    ("five points", "got str"),
    (5, "got int"),
    (PluginFailure("someone_else", "crm_score_lead", "spoofed"), "got PluginFailure"),
    ((f for f in ()), "got generator"),
    ([ScoreFactor("ok", 5, "fine"), "extra"], "expected ScoreFactor, got str"),
    (forged_factor("x", 2.5, "float points"), "points must be an int"),
    (forged_factor("x", True, "bool points"), "points must be an int"),
    (forged_factor("", 5, "empty code"), "code must be a non-empty string"),
    (forged_factor("x", 5, None), "reason must be a string"),
])
def test_a_malformed_result_is_reported_degraded_and_the_plugin_counts_for_nothing(result, complaint, caplog):
    host = make_host(Returning(result), Fixed(10), names=["sloppy", "steady"])

    with caplog.at_level(logging.ERROR, logger="crm.plugins"):
        decision = host.score_lead(LEAD)

    assert decision.score == 10
    assert {f.plugin for f in decision.factors} == {"steady"}
    (failure,) = decision.degraded
    assert (failure.plugin, failure.code) == ("sloppy", "plugin_malformed_result")
    assert complaint in failure.detail
    assert any("sloppy" in r.getMessage() for r in caplog.records)


def test_building_a_bad_factor_fails_inside_the_plugin_and_degrades_only_it():
    class BoolPoints:
        @hookimpl
        def crm_score_lead(self, lead):
            return ScoreFactor("flag", True, "a flag is not a point")

    decision = run_score_lead(BoolPoints)

    assert decision.score == 0
    assert decision.degraded[0].code == "plugin_error"
    assert decision.degraded[0].detail.startswith("TypeError: invalid ScoreFactor: points must be an int")


def test_returning_none_or_an_empty_list_contributes_nothing_and_is_not_a_failure():
    decision = make_host(Returning(None), Returning([]), names=["quiet", "empty"]).score_lead(LEAD)

    assert decision == ScoreDecision(score=0, factors=(), degraded=())


def test_the_score_is_the_sum_of_points_clamped_to_0_and_100():
    assert make_host(Fixed(70), Fixed(50), names=["a", "b"]).score_lead(LEAD).score == 100
    assert make_host(Fixed(10), Fixed(-30), names=["a", "b"]).score_lead(LEAD).score == 0


def test_an_implementation_may_take_fewer_arguments_than_the_hook_offers():
    class NoArgs:
        @hookimpl
        def crm_score_lead(self):
            return ScoreFactor("constant", 4, "ignores the lead")

    assert run_score_lead(NoArgs).score == 4


def test_a_decision_serialises_to_json_with_its_factors_and_failures():
    decision = make_host(Fixed(5), Raising(), names=["steady", "buggy"]).score_lead(LEAD)

    assert json.loads(json.dumps(decision.to_dict())) == {
        "score": 5,
        "factors": [{"plugin": "steady", "code": "fixed", "points": 5, "reason": "always 5"}],
        "degraded": [{"plugin": "buggy", "hook": "crm_score_lead", "code": "plugin_error"}],  # no exception text
    }


# --- start-up checks ----------------------------------------------------------------------------------------

def test_a_misspelt_hook_stops_the_build_with_an_error_naming_plugin_and_hook(tmp_path):
    write_plugin(tmp_path, "typo", """
        from crm_plugins import hookimpl

        @hookimpl
        def crm_score_leed(lead):
            return None
    """)

    with pytest.raises(PluginError) as caught:
        only_local(tmp_path)

    message = str(caught.value)
    assert "'typo'" in message and "'crm_score_leed'" in message
    assert "did you mean 'crm_score_lead'" in message


def test_a_hook_asking_for_an_argument_the_spec_lacks_stops_the_build(tmp_path):
    write_plugin(tmp_path, "greedy", """
        from crm_plugins import hookimpl

        @hookimpl
        def crm_score_lead(lead, account):
            return None
    """)

    with pytest.raises(PluginError, match="greedy"):
        only_local(tmp_path)


def test_a_wrapper_implementation_is_refused_because_each_plugin_is_called_alone():
    class Wrapper:
        @hookimpl(wrapper=True)
        def crm_score_lead(self, lead):
            return (yield)

    with pytest.raises(PluginError, match="may not be a wrapper"):
        make_host(Wrapper)


# --- the author's harness -----------------------------------------------------------------------------------

def test_the_harness_scores_with_only_the_given_plugin_and_a_sample_lead():
    decision = run_score_lead(Fixed(12))

    assert [(f.plugin, f.code, f.points) for f in decision.factors] == [("Fixed", "fixed", 12)]
    assert decision.score == 12


def test_the_harness_applies_field_overrides_to_the_sample_or_to_a_given_lead():
    seen = []

    class Spy:
        @hookimpl
        def crm_score_lead(self, lead):
            seen.append(lead)

    run_score_lead(Spy, source="referral", plugin_name="spy")
    run_score_lead(Spy, LEAD, company="Acme")

    assert seen[0] == sample_lead(source="referral")
    assert seen[1] == LeadInput(email="ada@engines.example", company="Acme")


def test_the_harness_reports_failures_exactly_as_the_services_do():
    decision = run_score_lead(Raising, plugin_name="buggy")

    assert decision.degraded[0].plugin == "buggy"
    assert decision.score == 0


def test_the_harness_rejects_a_misspelt_hook_like_start_up_does():
    class Typo:
        @hookimpl
        def crm_score_leed(self, lead):
            return None

    with pytest.raises(PluginError, match="crm_score_leed"):
        run_score_lead(Typo)


def test_each_factor_is_validated_once_when_the_plugin_builds_it(monkeypatch):
    import crm_plugins.host as host_module
    import crm_plugins.types as types_module

    checked = []

    def counting(factor):
        checked.append(factor.code)
        return original(factor)

    original = types_module.factor_problem
    monkeypatch.setattr(types_module, "factor_problem", counting)
    monkeypatch.setattr(host_module, "factor_problem", counting)
    host = make_host(Fixed(10, "a"), Fixed(5, "b"), names=["first", "second"])

    decision = host.score_lead(LEAD)

    assert decision.score == 15
    assert sorted(checked) == ["a", "b"]


def test_a_forged_factor_is_still_checked_by_the_host():
    host = make_host(Returning(forged_factor("x", 2.5, "float points")), names=["sloppy"])

    decision = host.score_lead(LEAD)

    assert decision.score == 0 and decision.degraded[0].plugin == "sloppy"
