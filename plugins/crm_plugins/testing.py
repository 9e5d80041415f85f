"""Run a plugin's hooks on sample inputs, without services, under the rules the services apply.

    from crm_plugins.testing import run_lifecycle_stage, run_loyalty_points, run_score_lead

    def test_my_plugin_likes_referrals():
        decision = run_score_lead(my_plugin, source="referral")
        assert [f.code for f in decision.factors] == ["referral_bonus"]
        assert not decision.degraded

    def test_my_plugin_gives_a_weekend_bonus():
        decision = run_loyalty_points(my_plugin, amount=Decimal("20.00"))  # the sample purchase is on a Saturday
        assert [(f.code, f.points) for f in decision.factors] == [("weekend_bonus", 20)]

    def test_my_plugin_keeps_big_spenders_loyal():
        decision = run_lifecycle_stage(my_plugin, stage="lapsed", purchase_count=40)
        assert (decision.stage, decision.source) == ("loyal", "my_plugin")
"""
from __future__ import annotations

import dataclasses
import inspect
from datetime import datetime, timezone
from decimal import Decimal

from .host import PluginHost
from .types import (
    CustomerInput,
    LeadInput,
    PointsDecision,
    ProgramInput,
    PurchaseInput,
    ScoreDecision,
    StageDecision,
)

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

_SAMPLE_PURCHASE = PurchaseInput(
    id=None,
    member_id="6f1c2f4e-3b8a-4c55-9d0e-2a7b1c9e8f10",
    contact_id="0b9e4c1d-7a2f-4e6b-8c3d-5f1a2b3c4d5e",
    amount=Decimal("42.50"),
    currency="EUR",
    occurred_at=datetime(2026, 3, 14, 10, 30, tzinfo=timezone.utc),  # a Saturday
    external_id="receipt-1001",
)

_SAMPLE_PROGRAM = ProgramInput(
    id=None,
    code="default",
    name="Default program",
    points_per_unit=Decimal(1),
    currency="EUR",
)

_SAMPLE_CUSTOMER = CustomerInput(
    contact_id="0b9e4c1d-7a2f-4e6b-8c3d-5f1a2b3c4d5e",
    purchase_count=4,
    last_purchase_at=datetime(2026, 3, 14, 10, 30, tzinfo=timezone.utc),
    as_of=datetime(2026, 6, 1, 0, 0, tzinfo=timezone.utc),
)


def sample_lead(**overrides) -> LeadInput:
    """A complete, plausible lead; keyword arguments replace single fields (`sample_lead(job_title=None)`)."""
    return dataclasses.replace(_SAMPLE_LEAD, **overrides)


def sample_purchase(**overrides) -> PurchaseInput:
    """A plausible purchase of 42.50 EUR; keyword arguments replace single fields (`sample_purchase(amount=...)`)."""
    return dataclasses.replace(_SAMPLE_PURCHASE, **overrides)


def sample_program(**overrides) -> ProgramInput:
    """The default program: 1 point per EUR; keyword arguments replace single fields."""
    return dataclasses.replace(_SAMPLE_PROGRAM, **overrides)


def sample_customer(**overrides) -> CustomerInput:
    """A customer with 4 purchases, the last 78 days before `as_of`; keyword arguments replace single fields."""
    return dataclasses.replace(_SAMPLE_CUSTOMER, **overrides)


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


def run_loyalty_points(plugin, purchase: PurchaseInput | None = None, program: ProgramInput | None = None, *,
                       plugin_name: str | None = None, **purchase_fields) -> PointsDecision:
    """Award points for one purchase with only `plugin` loaded; returns the decision the loyalty service stores."""
    if purchase is None:
        purchase = sample_purchase(**purchase_fields)
    elif purchase_fields:
        purchase = dataclasses.replace(purchase, **purchase_fields)
    host = make_host(plugin, names=[plugin_name] if plugin_name else None)
    return host.loyalty_points(purchase, program or sample_program())


def run_lifecycle_stage(plugin, customer: CustomerInput | None = None, stage: str = "repeater", *,
                        plugin_name: str | None = None, **customer_fields) -> StageDecision:
    """Decide one customer's stage with only `plugin` loaded; `stage` is what the rules said (default repeater)."""
    if customer is None:
        customer = sample_customer(**customer_fields)
    elif customer_fields:
        customer = dataclasses.replace(customer, **customer_fields)
    host = make_host(plugin, names=[plugin_name] if plugin_name else None)
    return host.lifecycle_stage(customer, stage)
