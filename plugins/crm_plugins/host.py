"""The plugin host: one pluggy manager plus the isolation rules that turn hook results into decisions.

The services build it through `services.common.plugins.build_plugin_host` (which adds discovery);
`crm_plugins.testing` builds it with a single plugin, so authors test against the very same rules.
"""
from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import pluggy

from . import hookspecs
from .types import (
    PLUGIN_ERROR,
    PLUGIN_MALFORMED_RESULT,
    PLUGIN_UNAVAILABLE,
    AppliedCriterion,
    AppliedFactor,
    AppliedFinding,
    AppliedRiskFactor,
    CustomerHistory,
    CustomerInput,
    Finding,
    LeadInput,
    PartnerHistory,
    PartnerInput,
    PartnerScoreDecision,
    PartnerTerminationHistory,
    PluginFailure,
    PointAward,
    PointsDecision,
    ProgramInput,
    PurchaseInput,
    RiskAssessment,
    RiskFactor,
    ScoreCriterion,
    ScorecardMetrics,
    ScorecardPeriod,
    ScoreDecision,
    ScoreFactor,
    StageDecision,
    TerminationEvaluation,
    TerminationPolicy,
    TerminationSubject,
    award_problem,
    criterion_problem,
    factor_problem,
    finding_problem,
    risk_factor_problem,
    stage_problem,
    was_checked,
)

logger = logging.getLogger("crm.plugins")

SCORE_LEAD = "crm_score_lead"
LOYALTY_POINTS = "crm_loyalty_points"
LIFECYCLE_STAGE = "crm_lifecycle_stage"
ASSESS_PARTNER_RISK = "crm_assess_partner_risk"
SCORE_PARTNER = "crm_score_partner"
EVALUATE_TERMINATION = "crm_evaluate_termination"

# Why a plugin was not loaded (the `code` of an entry in `PluginHost.errors`).
LOAD_FAILED = "plugin_load_failed"  # importing or instantiating it raised
NAME_TAKEN = "plugin_name_taken"  # another plugin was already registered under its name


class PluginError(Exception):
    """A plugin cannot be used at all: it implements an unknown hook or has a bad hook signature."""


@dataclass(frozen=True)
class _Origin:
    source: str
    origin: str | None


def new_plugin_manager() -> pluggy.PluginManager:
    """A pluggy manager for project `crm` that knows every hookspec."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def as_plugin(obj):
    """The object to register: a class is instantiated, a module or instance is used as it is."""
    return obj() if inspect.isclass(obj) else obj


class PluginHost:
    """Loaded plugins and the calls into them; every implementation is called on its own."""

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm or new_plugin_manager()
        self.errors: list[dict] = []
        self._origins: dict[str, _Origin] = {}

    def block(self, name: str) -> None:
        """Refuse any later registration under `name`."""
        self.pm.set_blocked(name)

    def is_blocked(self, name: str) -> bool:
        """True when `name` was disabled."""
        return self.pm.is_blocked(name)

    @property
    def disabled(self) -> list[str]:
        """The names that were disabled."""
        return [name for name, plugin in self.pm.list_name_plugin() if plugin is None]

    def register(self, plugin, *, name: str, source: str = "direct", origin: str | None = None) -> bool:
        """Register a module, instance or class under `name`; False when the name is disabled."""
        if self.pm.is_blocked(name):
            return False
        if self.pm.has_plugin(name):
            taken_by = self._origins.get(name, _Origin("direct", None)).source
            raise PluginError(f"plugin name {name!r} ({source}) is already taken by a {taken_by} plugin")
        try:
            registered = self.pm.register(as_plugin(plugin), name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r} ({source}): {exc}") from exc
        except ValueError as exc:  # the same object registered twice under different names
            raise PluginError(f"plugin {name!r} ({source}): {exc}") from exc
        if registered is None:
            return False
        self._origins[name] = _Origin(source, origin)
        return True

    def add_error(self, name: str, source: str, error: str, code: str = LOAD_FAILED) -> None:
        """Record a plugin that could not be loaded (it is skipped, the process still starts).

        `error` may quote the plugin's own exception: it is logged, and listings show only the `code`.
        """
        logger.error("plugin %r (%s) not loaded: %s", name, source, error, extra={"plugin": name, "code": code})
        self.errors.append({"name": name, "source": source, "code": code, "error": error})

    def check(self) -> None:
        """Raise PluginError for a hook nobody specified (a misspelling) or one the host cannot call."""
        for hook_name, caller in vars(self.pm.hook).items():
            if not isinstance(caller, pluggy.HookCaller):
                continue
            for impl in caller.get_hookimpls():
                if not caller.has_spec():
                    if impl.optionalhook:
                        continue
                    close = difflib.get_close_matches(hook_name, hookspecs.HOOK_NAMES, n=1)
                    known = ", ".join(hookspecs.HOOK_NAMES)
                    hint = f"; did you mean {close[0]!r}?" if close else f"; known hooks: {known}"
                    raise PluginError(f"plugin {impl.plugin_name!r} implements unknown hook {hook_name!r}{hint}")
                if impl.wrapper or impl.hookwrapper:
                    # The host calls each implementation itself for isolation, so there is no chain to wrap.
                    raise PluginError(f"plugin {impl.plugin_name!r}: {hook_name!r} may not be a wrapper")
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(str(exc)) from exc

    def score_lead(self, lead: LeadInput) -> ScoreDecision:
        """Ask every plugin for score factors; failures are reported on the decision, not raised."""
        factors, failures = self._contribute(SCORE_LEAD, {"lead": lead}, ScoreFactor, factor_problem)
        return ScoreDecision.from_factors(factors, failures)

    def loyalty_points(self, purchase: PurchaseInput, program: ProgramInput) -> PointsDecision:
        """Ask every plugin for point awards on a purchase; failures are reported on the decision, not raised."""
        factors, failures = self._contribute(LOYALTY_POINTS, {"purchase": purchase, "program": program},
                                             PointAward, award_problem)
        return PointsDecision.from_awards(factors, failures)

    def assess_partner_risk(self, partner: PartnerInput, history: PartnerHistory) -> RiskAssessment:
        """Ask every plugin for risk factors on a partner; failures are reported on the assessment, not raised."""
        factors, failures = self._contribute(ASSESS_PARTNER_RISK, {"partner": partner, "history": history},
                                             RiskFactor, risk_factor_problem, applied=_applied_risk_factor)
        return RiskAssessment.from_factors(factors, failures)

    def score_partner(self, partner: PartnerInput, period: ScorecardPeriod,
                      metrics: ScorecardMetrics) -> PartnerScoreDecision:
        """Ask every plugin for scorecard criteria; failures are reported on the decision, not raised."""
        criteria, failures = self._contribute(SCORE_PARTNER, {"partner": partner, "period": period,
                                                              "metrics": metrics},
                                              ScoreCriterion, criterion_problem, applied=_applied_criterion)
        return PartnerScoreDecision(tuple(criteria), tuple(failures))

    def evaluate_termination(self, subject: TerminationSubject, history: CustomerHistory | PartnerTerminationHistory,
                             policies: Mapping[str, Sequence[TerminationPolicy]]) -> TerminationEvaluation:
        """Apply a policy set to one subject; failures are reported on the evaluation, not raised.

        `policies` maps a plugin name to that plugin's policies in the set. Only those plugins are called, each
        with only its own policies; a finding with a code that is not one of them makes that plugin's whole
        contribution malformed. A name no loaded plugin implements the hook under is reported as unavailable.
        """
        hook = EVALUATE_TERMINATION
        loaded = getattr(self.pm.hook, hook).get_hookimpls()
        # A plugin with no policy in the set has nothing to apply; one with policies gets only its own.
        impls = [impl for impl in loaded if policies.get(impl.plugin_name)]
        own = {impl.plugin_name: tuple(policies[impl.plugin_name]) for impl in impls}
        findings, failures = self._contribute(
            hook, [{"subject": subject, "history": history, "policies": own[impl.plugin_name]} for impl in impls],
            Finding, finding_problem, applied=_applied_finding, impls=impls,
            also_malformed=lambda plugin, contributed: _unknown_code(contributed, own[plugin]))
        implementing = {impl.plugin_name for impl in loaded}
        failures.extend(PluginFailure(name, hook, PLUGIN_UNAVAILABLE, "not loaded")
                        for name in policies if name not in implementing)
        return TerminationEvaluation(tuple(findings), tuple(failures))

    def has_implementations(self, hook: str) -> bool:
        """True when at least one loaded plugin implements `hook` (callers may then skip work for nobody)."""
        caller = getattr(self.pm.hook, hook, None)
        return bool(caller and caller.get_hookimpls())

    def lifecycle_stage(self, customer: CustomerInput, stage: str) -> StageDecision:
        """The stage of the first plugin (in pluggy's order) that returns one, else the rules' `stage`.

        Every implementation is called on its own (under the time budget, all at once); one that raises,
        returns something that is not a stage or times out is reported on the decision and passed over.
        """
        hook = LIFECYCLE_STAGE
        impls = list(reversed(getattr(self.pm.hook, hook).get_hookimpls()))  # pluggy calls the last-added first
        if not impls:
            return StageDecision(stage)
        failures: list[PluginFailure] = []
        decided = None
        for impl, (result, failure) in zip(impls, self._call_each(impls, hook, {"customer": customer, "stage": stage})):
            if failure:
                failures.append(failure)
                continue
            if result is None:
                continue
            problem = stage_problem(result)
            if problem:
                failures.append(self._malformed(impl.plugin_name, hook, problem))
            elif decided is None:  # a later plugin's stage is not used; its failure is still reported
                decided = StageDecision(result, impl.plugin_name)
        if decided is None:
            return StageDecision(stage, StageDecision.RULES, tuple(failures))
        return StageDecision(decided.stage, decided.source, tuple(failures))

    def _contribute(self, hook: str, kwargs: dict | Sequence[dict], item_type: type, problem_of, applied=None, *,
                    impls=None, also_malformed=None) -> tuple[list, list[PluginFailure]]:
        """Call each implementation of a contribute hook on its own; a bad one is dropped whole and reported.

        `applied(plugin, item)` makes what the decision counts of one item (default: an AppliedFactor).
        `impls` are the implementations to call (default: every one); `kwargs` is one dict for all of them or one
        per implementation. `also_malformed(plugin, items)` names a further fault of a plugin's well-formed,
        non-empty items (None: none), which drops them as malformed too.
        """
        applied = applied or _applied_factor
        factors: list = []
        failures: list[PluginFailure] = []
        if impls is None:
            impls = getattr(self.pm.hook, hook).get_hookimpls()
        for impl, (result, failure) in zip(impls, self._call_each(impls, hook, kwargs)):
            if failure:
                failures.append(failure)
                continue
            contributed, problem = _contributions(result, item_type, problem_of)
            if not problem and contributed and also_malformed is not None:
                problem = also_malformed(impl.plugin_name, contributed)
            if problem:
                failures.append(self._malformed(impl.plugin_name, hook, problem))
                continue
            factors.extend(applied(impl.plugin_name, f) for f in contributed)
        return factors, failures

    def list_plugins(self) -> list[dict]:
        """Every loaded plugin with its source and the hooks it implements, in registration order."""
        listed = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:  # a disabled name
                continue
            where = self._origins.get(name, _Origin("direct", None))
            hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
            listed.append({"name": name, "source": where.source, "origin": where.origin, "hooks": hooks})
        return listed

    def _call_each(self, impls, hook: str,
                   kwargs: dict | Sequence[dict]) -> list[tuple[object, PluginFailure | None]]:
        """(result, failure) of each implementation, in order; here each is called on the caller's thread.

        `kwargs` is the hook's arguments for every implementation, or a list with one dict per implementation.
        The services' host (`services.common.plugins`) overrides this to give every call a time budget.
        """
        each = per_implementation(impls, kwargs)
        return [self._call(impl, hook, args) for impl, args in zip(impls, each, strict=True)]

    def _call(self, impl, hook: str, kwargs: dict) -> tuple[object, PluginFailure | None]:
        try:
            return impl.function(*arguments(impl, kwargs)), None
        except Exception as exc:  # noqa: BLE001 - a plugin bug must not fail the request
            return None, self._raised(impl.plugin_name, hook, exc)

    def _raised(self, plugin: str, hook: str, exc: BaseException) -> PluginFailure:
        # The exception's text goes to the log only: it may hold anything the plugin had at hand.
        logger.error("plugin %r raised in %s", plugin, hook, exc_info=exc, extra={"plugin": plugin, "hook": hook})
        return PluginFailure(plugin, hook, PLUGIN_ERROR, f"{type(exc).__name__}: {exc}")

    def _malformed(self, plugin: str, hook: str, problem: str) -> PluginFailure:
        logger.error("plugin %r returned a malformed result from %s: %s", plugin, hook, problem,
                     extra={"plugin": plugin, "hook": hook})
        return PluginFailure(plugin, hook, PLUGIN_MALFORMED_RESULT, f"malformed result: {problem}")


def _applied_factor(plugin: str, item) -> AppliedFactor:
    return AppliedFactor(plugin, item.code, item.points, item.reason)


def _applied_finding(plugin: str, item: Finding) -> AppliedFinding:
    return AppliedFinding(plugin, item.code, item.severity, item.strategy, item.reason, item.evidence)


def _applied_risk_factor(plugin: str, item: RiskFactor) -> AppliedRiskFactor:
    return AppliedRiskFactor(plugin, item.code, item.weight, item.reason)


def _applied_criterion(plugin: str, item: ScoreCriterion) -> AppliedCriterion:
    return AppliedCriterion(plugin, item.code, Decimal(item.score), Decimal(item.weight), item.reason)


def per_implementation(impls, kwargs: dict | Sequence[dict]) -> Sequence[dict]:
    """The arguments of each implementation: `kwargs` itself when it is one dict shared by all of them."""
    return [kwargs] * len(impls) if isinstance(kwargs, dict) else kwargs


def _unknown_code(findings: tuple, policies: tuple[TerminationPolicy, ...]) -> str | None:
    """Why findings are malformed for these policies (a code none of them has), or None."""
    for finding in findings:
        if not any(policy.code == finding.code for policy in policies):
            codes = ", ".join(sorted({policy.code for policy in policies}))
            return f"finding code {finding.code!r} is not one of the plugin's policies ({codes})"
    return None


def arguments(impl, kwargs: dict) -> tuple:
    """The positional arguments of one implementation (it may accept a subset of the spec's, as in pluggy)."""
    return tuple(kwargs[arg] for arg in impl.argnames)


def _contributions(result, item_type: type, problem_of) -> tuple[tuple, str | None]:
    """The items a contribute hook returned (one, a list/tuple, or None), or why they are malformed."""
    if result is None:
        return (), None
    items = (result,) if isinstance(result, item_type) else result
    if not isinstance(items, (list, tuple)):
        return (), f"expected a {item_type.__name__}, a list of them or None, got {type(result).__name__}"
    for item in items:
        if type(item) is item_type and was_checked(item):
            continue  # validated once, when the plugin built it
        problem = problem_of(item)
        if problem:
            return (), problem
    return tuple(items), None
