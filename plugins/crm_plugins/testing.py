"""Run a plugin's hooks on sample inputs, without services, under the rules the services apply.

    from crm_plugins.testing import run_score_lead

    def test_my_plugin_likes_referrals():
        decision = run_score_lead(my_plugin, source="referral")
        assert [f.code for f in decision.factors] == ["referral_bonus"]
        assert not decision.degraded
"""
from __future__ import annotations

import dataclasses
import inspect

from .host import PluginHost
from .types import LeadInput, ScoreDecision

_SAMPLE_LEAD = LeadInput(
    id=None,
    email="jane.doe@acme-analytics.com",
    first_name="Jane",
    last_name="Doe",
    company="Acme Analytics",
    job_title="Head of Operations",
    phone="+49 30 1234567",
    source="web_form",
    campaign="spring-launch",
)


def sample_lead(**overrides) -> LeadInput:
    """A complete, plausible lead; keyword arguments replace single fields (`sample_lead(job_title=None)`)."""
    return dataclasses.replace(_SAMPLE_LEAD, **overrides)


def default_plugin_name(plugin) -> str:
    """The name the harness registers a plugin under: its module or class name."""
    if inspect.ismodule(plugin):
        return plugin.__name__.rpartition(".")[2]
    return plugin.__name__ if inspect.isclass(plugin) else type(plugin).__name__


def make_host(*plugins, names: list[str] | None = None) -> PluginHost:
    """A host holding exactly these plugins (no built-ins, nothing installed), checked as at start-up."""
    host = PluginHost()
    names = names or [default_plugin_name(p) for p in plugins]
    if len(names) != len(plugins):
        raise ValueError("give one name per plugin")
    for plugin, name in zip(plugins, names):
        host.register(plugin, name=name, source="test")
    host.check()
    return host


def run_score_lead(plugin, lead: LeadInput | None = None, *, plugin_name: str | None = None,
                   **lead_fields) -> ScoreDecision:
    """Score one lead with only `plugin` loaded and return the decision the leads service would store."""
    if lead is None:
        lead = sample_lead(**lead_fields)
    elif lead_fields:
        lead = dataclasses.replace(lead, **lead_fields)
    host = make_host(plugin, names=[plugin_name] if plugin_name else None)
    return host.score_lead(lead)
