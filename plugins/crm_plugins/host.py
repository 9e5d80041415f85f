"""The plugin host: one pluggy manager plus the isolation rules that turn hook results into decisions.

The services build it through `services.common.plugins.build_plugin_host` (which adds discovery);
`crm_plugins.testing` builds it with a single plugin, so authors test against the very same rules.
"""
from __future__ import annotations

import difflib
import inspect
import logging
from dataclasses import dataclass

import pluggy

from . import hookspecs
from .types import (
    AppliedFactor,
    LeadInput,
    PluginFailure,
    PointAward,
    PointsDecision,
    ProgramInput,
    PurchaseInput,
    ScoreDecision,
    ScoreFactor,
    award_problem,
    factor_problem,
    was_checked,
)

logger = logging.getLogger("crm.plugins")

SCORE_LEAD = "crm_score_lead"
LOYALTY_POINTS = "crm_loyalty_points"


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

    def add_error(self, name: str, source: str, error: str) -> None:
        """Record a plugin that could not be loaded (it is skipped, the process still starts)."""
        logger.error("plugin %r (%s) not loaded: %s", name, source, error, extra={"plugin": name})
        self.errors.append({"name": name, "source": source, "error": error})

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

    def _contribute(self, hook: str, kwargs: dict, item_type: type, problem_of) -> tuple[list[AppliedFactor], list[PluginFailure]]:
        """Call each implementation of a contribute hook on its own; a bad one is dropped whole and reported."""
        factors: list[AppliedFactor] = []
        failures: list[PluginFailure] = []
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            result, failure = self._call(impl, hook, kwargs)
            if failure:
                failures.append(failure)
                continue
            contributed, problem = _contributions(result, item_type, problem_of)
            if problem:
                failures.append(self._malformed(impl.plugin_name, hook, problem))
                continue
            factors.extend(AppliedFactor(impl.plugin_name, f.code, f.points, f.reason) for f in contributed)
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

    def _call(self, impl, hook: str, kwargs: dict) -> tuple[object, PluginFailure | None]:
        # An implementation may accept a subset of the spec's arguments, as with pluggy's own calls.
        try:
            return impl.function(*(kwargs[arg] for arg in impl.argnames)), None
        except Exception as exc:  # a plugin bug must not fail the request
            logger.exception("plugin %r raised in %s", impl.plugin_name, hook,
                             extra={"plugin": impl.plugin_name, "hook": hook})
            return None, PluginFailure(impl.plugin_name, hook, f"{type(exc).__name__}: {exc}")

    def _malformed(self, plugin: str, hook: str, problem: str) -> PluginFailure:
        logger.error("plugin %r returned a malformed result from %s: %s", plugin, hook, problem,
                     extra={"plugin": plugin, "hook": hook})
        return PluginFailure(plugin, hook, f"malformed result: {problem}")


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
