"""The plugin contract: every hookspec is tested and documented (a hook nobody can learn about is not an API)."""
from __future__ import annotations

import inspect
import re
import sys
import types
from pathlib import Path

import pytest
from crm_plugins import hookspecs
from crm_plugins.testing import run_score_lead

ROOT = Path(__file__).resolve().parents[3]
GUIDE = ROOT / "docs" / "plugins.md"


def _spec_names() -> set[str]:
    marker = f"{hookspecs.PROJECT_NAME}_spec"  # the attribute pluggy's HookspecMarker sets
    return {name for name, obj in vars(hookspecs).items() if callable(obj) and hasattr(obj, marker)}


def _test_sources() -> str:
    this = Path(__file__).resolve()
    return "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py") if p.resolve() != this)


def test_hook_names_lists_exactly_the_hookspecs():
    assert set(hookspecs.HOOK_NAMES) == _spec_names()
    assert all(name.startswith("crm_") for name in hookspecs.HOOK_NAMES)


@pytest.mark.parametrize("hook", hookspecs.HOOK_NAMES)
def test_every_hook_is_exercised_by_a_test(hook):
    assert re.search(rf"\b{hook}\b", _test_sources()), f"no test under tests/ mentions {hook}"


@pytest.mark.parametrize("hook", hookspecs.HOOK_NAMES)
def test_every_hook_has_a_section_in_the_plugin_guide(hook):
    headings = [line for line in GUIDE.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    assert any(hook in line for line in headings), f"docs/plugins.md has no heading for {hook}"


@pytest.mark.parametrize("hook", hookspecs.HOOK_NAMES)
def test_every_hookspec_documents_each_parameter_and_its_return(hook):
    spec = getattr(hookspecs, hook)
    doc = spec.__doc__ or ""
    assert "Returns:" in doc
    for param in inspect.signature(spec).parameters:
        assert re.search(rf"^\s+{param}:", doc, re.MULTILINE), f"{hook} docstring does not describe {param!r}"


def _guide_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.DOTALL)


def _as_module(name: str, code: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(code, f"docs/plugins.md:{name}", "exec"), module.__dict__)  # noqa: S102 - our own guide's code
    return module


def test_the_guide_examples_run_and_their_own_tests_pass(monkeypatch):
    plugins = [code for code in _guide_examples() if "@hookimpl" in code]
    tests = [code for code in _guide_examples() if "def test_" in code]
    assert len(plugins) >= 2 and tests, "the guide should show a module, a class and a test"

    for number, code in enumerate(plugins):
        module = _as_module(f"guide_example_{number}", code)
        decision = run_score_lead(getattr(module, "plugin", module), email="buyer@acme.com",
                                  campaign="spring-launch", phone=None)
        assert decision.factors and not decision.degraded

    # The testing example imports the first example under the file name the guide gives it.
    monkeypatch.setitem(sys.modules, "key_accounts", _as_module("key_accounts", plugins[0]))
    for code in tests:
        module = _as_module("guide_tests", code)
        for name in [n for n in vars(module) if n.startswith("test_")]:
            getattr(module, name)()
