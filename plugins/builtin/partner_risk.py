"""Built-in partner risk: a falling delivery record, open disputes, concentration of spend and a contract that
runs out with nothing after it, each an explained risk factor.

Registered as `builtin.partner_risk` by the partners service, exactly like a third-party plugin. Every rule
reads only the history the service passes in, so the parameters below are the whole policy. To assess with
other parameters, disable it (CRM_PLUGINS_DISABLED=builtin.partner_risk) and load, for instance from
CRM_PLUGINS_DIR, a file holding `plugin = PartnerRisk(RiskParameters(concentration_high=Decimal("0.4")))`.
The weights at their defaults add up to 100 for a partner that trips every rule.
"""
from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from decimal import Decimal

from crm_plugins import ContractSnapshot, DeliveryPeriod, PartnerHistory, PartnerInput, RiskFactor, hookimpl


@dataclasses.dataclass(frozen=True, kw_only=True)
class RiskParameters:
    """The built-in rules' parameters; the defaults are what `builtin.partner_risk` applies.

    Delivery trend: the `recent_periods` latest months are compared with the months before them (each side
    pooled, months with fewer than `min_deliveries` left out); a fall of at least `on_time_drop` in the
    on-time rate costs `on_time_weight`, of at least `quality_drop` in the quality rate `quality_weight`.
    Open disputes: `dispute_weight` per unresolved dispute plus `escalated_weight` per escalated one, at most
    `disputes_max_weight`. Concentration: a share of a currency's 12-month spend from `concentration_medium`
    costs `concentration_medium_weight`, from `concentration_high` `concentration_high_weight` (the highest
    share over the currencies counts). Expiry: a contract that ends within `expiry_days` of the day assessed,
    does not renew itself, and is followed by no other contract and no open proposal costs `expiry_weight`.
    """

    recent_periods: int = 2
    min_deliveries: int = 3
    on_time_drop: Decimal = Decimal("0.10")
    on_time_weight: int = 20
    quality_drop: Decimal = Decimal("0.05")
    quality_weight: int = 15
    dispute_weight: int = 5
    escalated_weight: int = 5
    disputes_max_weight: int = 25
    concentration_medium: Decimal = Decimal("0.25")
    concentration_medium_weight: int = 10
    concentration_high: Decimal = Decimal("0.50")
    concentration_high_weight: int = 20
    expiry_days: int = 90
    expiry_weight: int = 20


DEFAULTS = RiskParameters()


def _percent(rate: Decimal) -> str:
    return f"{(rate * 100).quantize(Decimal('0.1'))}%"


def _months(periods: list[DeliveryPeriod]) -> str:
    first, last = periods[0].first_day, periods[-1].last_day
    return f"{first:%Y-%m}" if (first.year, first.month) == (last.year, last.month) else f"{first:%Y-%m}..{last:%Y-%m}"


# --- delivery performance trend -------------------------------------------------------------------------------

def _pooled(periods: list[DeliveryPeriod]) -> DeliveryPeriod:
    return DeliveryPeriod(
        first_day=periods[0].first_day, last_day=periods[-1].last_day,
        deliveries=sum(p.deliveries for p in periods), on_time=sum(p.on_time for p in periods),
        quantity_ordered=sum((p.quantity_ordered for p in periods), Decimal(0)),
        quantity_delivered=sum((p.quantity_delivered for p in periods), Decimal(0)),
        quantity_rejected=sum((p.quantity_rejected for p in periods), Decimal(0)),
    )


def delivery_trend(history: PartnerHistory, params: RiskParameters = DEFAULTS) -> list[RiskFactor]:
    """A factor each for an on-time rate and a quality rate that fell from the earlier months to the latest."""
    counted = [p for p in history.periods if p.deliveries >= params.min_deliveries]
    recent, earlier = counted[-params.recent_periods:], counted[:-params.recent_periods]
    if not recent or not earlier:
        return []  # no trend without both sides
    before, after = _pooled(earlier), _pooled(recent)
    factors = []
    for code, rate, drop, weight in (
        ("on_time_falling", "on_time_rate", params.on_time_drop, params.on_time_weight),
        ("quality_falling", "quality_rate", params.quality_drop, params.quality_weight),
    ):
        was, now = getattr(before, rate), getattr(after, rate)
        if was is None or now is None or was - now < drop:
            continue
        label = "on-time rate" if code == "on_time_falling" else "quality rate"
        factors.append(RiskFactor(code, weight, f"{label} fell from {_percent(was)} ({_months(earlier)}, "
                                                 f"{before.deliveries} deliveries) to {_percent(now)} "
                                                 f"({_months(recent)}, {after.deliveries} deliveries)"))
    return factors


# --- open disputes --------------------------------------------------------------------------------------------

def open_disputes(history: PartnerHistory, params: RiskParameters = DEFAULTS) -> RiskFactor | None:
    """Risk points for every unresolved dispute, more for escalated ones, up to a ceiling."""
    count = history.open_dispute_count
    if not count:
        return None
    escalated = sum(d.escalated for d in history.open_disputes)
    weight = min(params.disputes_max_weight, params.dispute_weight * count + params.escalated_weight * escalated)
    by_category: dict[str, int] = {}
    amounts: dict[str, Decimal] = {}
    for group in history.open_disputes:
        by_category[group.category] = by_category.get(group.category, 0) + group.count
        amounts[group.currency] = amounts.get(group.currency, Decimal(0)) + group.amount
    categories = ", ".join(f"{n} {category}" for category, n in sorted(by_category.items()))
    claimed = ", ".join(f"{amount:.2f} {currency}" for currency, amount in sorted(amounts.items()))
    reason = f"{count} unresolved dispute{'s' if count != 1 else ''} ({categories}) claiming {claimed}"
    if escalated:
        reason += f"; {escalated} escalated"
    return RiskFactor("open_disputes", weight, reason)


# --- concentration of spend -----------------------------------------------------------------------------------

def concentration(history: PartnerHistory, params: RiskParameters = DEFAULTS) -> RiskFactor | None:
    """Risk when much of the last 12 months' delivered amount in a currency came from this one partner."""
    shares = [s for s in history.spend if s.share is not None]
    if not shares:
        return None
    top = max(shares, key=lambda s: s.share)
    if top.share >= params.concentration_high:
        code, weight = "concentration_high", params.concentration_high_weight
    elif top.share >= params.concentration_medium:
        code, weight = "concentration", params.concentration_medium_weight
    else:
        return None
    return RiskFactor(code, weight, f"{_percent(top.share)} of the amount delivered in {top.currency} over the "
                                    f"last 12 months ({top.partner_amount:.2f} of {top.total_amount:.2f})")


# --- contract expiring without a replacement ------------------------------------------------------------------

def _covers_after(contract: ContractSnapshot, end: date) -> bool:
    """True when `contract` is in force on the day after `end` (it starts by then and has not ended)."""
    after = end + timedelta(days=1)
    return contract.effective_from <= after and (contract.effective_to is None or contract.effective_to >= after)


def _proposal_extends(contract: ContractSnapshot) -> bool:
    return bool(contract.proposed_auto_renew) or (
        contract.proposed_effective_to is not None and contract.proposed_effective_to > contract.effective_to)


def expiring_contracts(history: PartnerHistory, params: RiskParameters = DEFAULTS) -> list[RiskFactor]:
    """A factor per contract ending soon that does not renew itself and that nothing follows or would extend."""
    horizon = history.as_of + timedelta(days=params.expiry_days)
    factors = []
    for contract in history.contracts:
        end = contract.effective_to
        if end is None or contract.auto_renew or not history.as_of <= end <= horizon:
            continue
        if _proposal_extends(contract):
            continue
        if any(_covers_after(other, end) for other in history.contracts if other.id != contract.id):
            continue
        days = (end - history.as_of).days
        factors.append(RiskFactor("contract_expiring", params.expiry_weight,
                                  f"contract {contract.title!r} ends on {end} (in {days} days) without "
                                  "auto-renewal, and no other contract or open proposal covers the time after it"))
    return factors


class PartnerRisk:
    """The four rules as one plugin, with the given parameters."""

    def __init__(self, params: RiskParameters = DEFAULTS) -> None:
        self.params = params

    @hookimpl
    def crm_assess_partner_risk(self, partner: PartnerInput, history: PartnerHistory) -> list[RiskFactor]:
        return assess(history, self.params)


def assess(history: PartnerHistory, params: RiskParameters = DEFAULTS) -> list[RiskFactor]:
    """Every factor the four rules find in `history`."""
    found = [*delivery_trend(history, params), open_disputes(history, params), concentration(history, params),
             *expiring_contracts(history, params)]
    return [f for f in found if f is not None]


@hookimpl
def crm_assess_partner_risk(partner: PartnerInput, history: PartnerHistory) -> list[RiskFactor]:
    return assess(history)
