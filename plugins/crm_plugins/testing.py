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

    def test_my_plugin_flags_a_single_source():
        assessment = run_assess_partner_risk(my_plugin, spend=(sample_spend(partner_amount=Decimal("900")),))
        assert [f.code for f in assessment.factors] == ["single_source"]

    def test_my_plugin_flags_a_serial_returner():
        evaluation = run_termination_plugin(my_plugin, policies=["serial_returner"], purchases=3)
        assert (evaluation.severity, evaluation.strategy) == ("high", "re_specify")
"""
from __future__ import annotations

import calendar
import dataclasses
import inspect
from datetime import date, datetime, timezone
from decimal import Decimal

from .host import PluginHost
from .types import (
    ContractSnapshot,
    CustomerAnalytics,
    CustomerHistory,
    CustomerInput,
    CustomerSpend,
    DeliveryPeriod,
    DisputeCount,
    LeadInput,
    PartnerHistory,
    PartnerInput,
    PartnerTerminationHistory,
    PaymentSummary,
    PointsDecision,
    ProgramInput,
    PurchaseInput,
    PartnerScoreDecision,
    RiskAssessment,
    ScorecardMetrics,
    ScorecardPeriod,
    ScoreDecision,
    SpendShare,
    StageDecision,
    TerminationEvaluation,
    TerminationPolicy,
    TerminationSubject,
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

_SAMPLE_PARTNER = PartnerInput(
    id="3d6f0a2b-8c4e-4f1a-9b7d-1e2c3a4b5c6d",
    name="Nordic Steel Supply",
    type="supplier",
    status="active",
    country="SE",
)

# Six steady months of deliveries up to 2026-06-15: 10 a month, 9 on time, 2% rejected.
_SAMPLE_PERIODS = tuple(
    DeliveryPeriod(first_day=date(2026, month, 1),
                   last_day=date(2026, month, 15 if month == 6 else calendar.monthrange(2026, month)[1]),
                   deliveries=10, on_time=9, quantity_ordered=Decimal("1000"), quantity_delivered=Decimal("990"),
                   quantity_rejected=Decimal("20"))
    for month in range(1, 7)
)

_SAMPLE_SPEND = SpendShare(currency="EUR", partner_amount=Decimal("120000.00"), total_amount=Decimal("1000000.00"))

_SAMPLE_CONTRACT = ContractSnapshot(
    id="7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    title="Framework agreement 2026",
    version=2,
    effective_from=date(2026, 1, 1),
    effective_to=date(2027, 12, 31),
    auto_renew=False,
    notice_period_days=90,
)

_SAMPLE_HISTORY = PartnerHistory(
    as_of=date(2026, 6, 15),
    periods=_SAMPLE_PERIODS,
    open_disputes=(),
    spend=(_SAMPLE_SPEND,),
    contracts=(_SAMPLE_CONTRACT,),
)

# 2026-Q3 of a good supplier: 20 deliveries promised, 18 on time, 1% rejected, one dispute.
_SAMPLE_SCORECARD_PERIOD = ScorecardPeriod(label="2026-Q3", start=date(2026, 7, 1), end=date(2026, 9, 30))
_SAMPLE_METRICS = ScorecardMetrics(
    deliveries=20, delivered=20, on_time=18, disputes=1, priced=20, within_price=19,
    quantity_ordered=Decimal("2000.000"), quantity_delivered=Decimal("1980.000"), quantity_rejected=Decimal("19.800"),
    on_time_rate=Decimal("0.9000"), fill_rate=Decimal("0.9900"), quality_rate=Decimal("0.9900"),
    dispute_rate=Decimal("0.0500"), price_adherence=Decimal("0.9500"),
)


# A quiet customer over the year to 2026-06-01: 12 purchases (2 on discount), 1 complaint, 6 invoices paid on
# time, no fraud flag, in the hold quadrant with a margin well above the cost to serve.
_SAMPLE_CUSTOMER_HISTORY = CustomerHistory(
    as_of=datetime(2026, 6, 1, tzinfo=timezone.utc),
    since=datetime(2025, 6, 1, tzinfo=timezone.utc),
    complaints=1,
    open_complaints=0,
    purchases=12,
    spend=(CustomerSpend(currency="EUR", purchases=12, revenue=Decimal("1200.00"), discounted_purchases=2,
                         discounted_revenue=Decimal("180.00"), discount_total=Decimal("20.00"), coupon_purchases=1,
                         returns=1, returned_amount=Decimal("40.00")),),
    payments=PaymentSummary(due=6, paid=6),
    fraud_flags=(),
    analytics=CustomerAnalytics(as_of=datetime(2026, 6, 1, tzinfo=timezone.utc), currency="EUR", quadrant="hold",
                                margin=Decimal("300.00"), cost_to_serve=Decimal("80.00"), clv=Decimal("950.00")),
)

# A reliable supplier over the year to 2026-06-15: 40 deliveries, 37 on time, 1% rejected, one price breach,
# one quality dispute (resolved).
_SAMPLE_PARTNER_TERMINATION_HISTORY = PartnerTerminationHistory(
    as_of=date(2026, 6, 15),
    since=date(2025, 6, 15),
    scorecard=ScorecardMetrics(
        deliveries=40, delivered=40, on_time=37, disputes=1, priced=40, within_price=39,
        quantity_ordered=Decimal("4000.000"), quantity_delivered=Decimal("4000.000"),
        quantity_rejected=Decimal("40.000"), on_time_rate=Decimal("0.9250"), fill_rate=Decimal("1.0000"),
        quality_rate=Decimal("0.9900"), dispute_rate=Decimal("0.0250"), price_adherence=Decimal("0.9750"),
    ),
    disputes=(DisputeCount(category="quality", opened=1, unresolved=0),),
)

_SAMPLE_SUBJECTS = {
    "customer": TerminationSubject(kind="customer", id="0b9e4c1d-7a2f-4e6b-8c3d-5f1a2b3c4d5e", name="Jane Doe",
                                   status="active"),
    "partner": TerminationSubject(kind="partner", id=_SAMPLE_PARTNER.id, name=_SAMPLE_PARTNER.name,
                                  status="active"),
}


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


def sample_partner(**overrides) -> PartnerInput:
    """An active Swedish supplier; keyword arguments replace single fields (`sample_partner(status="suspended")`)."""
    return dataclasses.replace(_SAMPLE_PARTNER, **overrides)


def sample_spend(**overrides) -> SpendShare:
    """120,000 of 1,000,000 EUR delivered over 12 months (a 12% share); keyword arguments replace fields."""
    return dataclasses.replace(_SAMPLE_SPEND, **overrides)


def sample_contract(**overrides) -> ContractSnapshot:
    """A contract in force until 2027-12-31, no auto-renewal, 90 days' notice; keyword arguments replace fields."""
    return dataclasses.replace(_SAMPLE_CONTRACT, **overrides)


def sample_partner_history(**overrides) -> PartnerHistory:
    """A quiet partner as of 2026-06-15: six steady months (90% on time, 98% quality), no open dispute, a 12%
    share of EUR spend, one contract until the end of 2027; keyword arguments replace single fields."""
    return dataclasses.replace(_SAMPLE_HISTORY, **overrides)


def sample_scorecard_period(**overrides) -> ScorecardPeriod:
    """2026-Q3 (2026-07-01 to 2026-09-30); keyword arguments replace single fields."""
    return dataclasses.replace(_SAMPLE_SCORECARD_PERIOD, **overrides)


def sample_scorecard_metrics(**overrides) -> ScorecardMetrics:
    """A good quarter: 20 deliveries, 90% on time, 99% filled, 99% quality, one dispute, 95% within the agreed
    price; keyword arguments replace single fields (the rates are not recomputed)."""
    return dataclasses.replace(_SAMPLE_METRICS, **overrides)


def sample_subject(kind: str = "customer", **overrides) -> TerminationSubject:
    """The sample customer (Jane Doe) or partner (Nordic Steel Supply), active; keyword arguments replace fields."""
    return dataclasses.replace(_SAMPLE_SUBJECTS[kind], **overrides)


def sample_customer_history(**overrides) -> CustomerHistory:
    """A quiet customer over the year to 2026-06-01: 12 purchases for 1,200.00 EUR (2 on discount, 15%), one
    complaint, 6 invoices paid on time, no fraud flag, the hold quadrant with a margin of 300.00 against 80.00
    to serve; keyword arguments replace single fields."""
    return dataclasses.replace(_SAMPLE_CUSTOMER_HISTORY, **overrides)


def sample_partner_termination_history(**overrides) -> PartnerTerminationHistory:
    """A reliable supplier over the year to 2026-06-15: 40 deliveries, 3 late, 1% of the quantity rejected, one
    delivery above the agreed price, one quality dispute; keyword arguments replace single fields
    (`scorecard=sample_scorecard_metrics(...)`; its rates are not recomputed)."""
    return dataclasses.replace(_SAMPLE_PARTNER_TERMINATION_HISTORY, **overrides)


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


def run_assess_partner_risk(plugin, *, partner: PartnerInput | None = None, history: PartnerHistory | None = None,
                            plugin_name: str | None = None, **history_fields) -> RiskAssessment:
    """Assess one partner's risk with only `plugin` loaded; returns the assessment the partners service shows.

    Keyword arguments replace single fields of the history (the sample one unless `history` is given).
    """
    history = dataclasses.replace(history or sample_partner_history(), **history_fields)
    host = make_host(plugin, names=[plugin_name] if plugin_name else None)
    return host.assess_partner_risk(partner or sample_partner(), history)


def run_score_partner(plugin, partner: PartnerInput | None = None, period: ScorecardPeriod | None = None,
                      metrics: ScorecardMetrics | None = None, *, plugin_name: str | None = None,
                      **metric_fields) -> PartnerScoreDecision:
    """Score one partner's period with only `plugin` loaded; returns the criteria the scorecard would show.

    Keyword arguments replace single fields of the metrics (the sample ones unless `metrics` is given).
    """
    metrics = dataclasses.replace(metrics or sample_scorecard_metrics(), **metric_fields)
    host = make_host(plugin, names=[plugin_name] if plugin_name else None)
    return host.score_partner(partner or sample_partner(), period or sample_scorecard_period(), metrics)


def run_termination_plugin(plugin, subject: TerminationSubject | None = None,
                           history: CustomerHistory | PartnerTerminationHistory | None = None,
                           policies=(), *, plugin_name: str | None = None, **history_fields) -> TerminationEvaluation:
    """Apply `policies` to one subject with only `plugin` loaded; returns the evaluation a service would record.

    `policies` are TerminationPolicy values or bare codes (no parameters), all naming this plugin; there must be
    at least one, as the services call a plugin only for its own policies. Without `history` the sample of the
    subject's kind is used (the sample customer unless `subject` is a partner); keyword arguments replace single
    fields of the history.
    """
    policies = tuple(TerminationPolicy(code=p) if isinstance(p, str) else p for p in policies)
    if not policies:
        raise ValueError("give at least one policy: a plugin is called only for the policies that name it")
    if subject is None:
        subject = sample_subject("partner" if isinstance(history, PartnerTerminationHistory) else "customer")
    if history is None:
        history = sample_customer_history() if subject.kind == "customer" else sample_partner_termination_history()
    history = dataclasses.replace(history, **history_fields) if history_fields else history
    name = plugin_name or default_plugin_name(plugin)
    host = make_host(plugin, names=[name])
    return host.evaluate_termination(subject, history, {name: policies})
