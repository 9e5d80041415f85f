"""Built-in termination policies: five for customers, four for partners, each a finding with its numbers.

Registered as `builtin.termination` by the contacts and partners services, exactly like a third-party plugin.
A policy record names a code below and this plugin; its `parameters` are checked and completed with
`check_parameters` when the record is written, so the plugin reads them as they are stored. `POLICIES` is the
catalogue (docs/termination-policies.md describes each policy): what each reads, its parameters and defaults.

Every policy needs a minimum sample (purchases, payments due, deliveries...) before it judges anyone, gives
`medium` from its threshold and `high` from a harder one, and recommends its `strategy` parameter.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from crm_plugins import (
    TERMINATION_STRATEGIES,
    CustomerHistory,
    Finding,
    PartnerTerminationHistory,
    TerminationPolicy,
    TerminationSubject,
    hookimpl,
)

INT, DECIMAL, STRATEGY, STRINGS = "int", "decimal", "strategy", "strings"
QUADRANTS = ("best", "invest", "hold", "worst")


@dataclass(frozen=True)
class Parameter:
    """One parameter of a policy: its `type` (int, decimal, strategy, strings), `default` and bounds as JSON
    values (decimals as strings), and what it means. `at_least` / `at_most` name a parameter of the same policy
    this one may not be below / above (a high threshold is at least as hard as the medium one); `choices`
    limits the items of a `strings` parameter."""

    type: str
    default: object
    minimum: object = None
    maximum: object = None
    description: str = ""
    at_least: str | None = None
    at_most: str | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicySpec:
    """A built-in policy: the subject `kind` it judges, its `name`, `description`, the strategy it recommends
    unless told otherwise and its parameters by name."""

    kind: str
    name: str
    description: str
    default_strategy: str
    parameters: dict[str, Parameter] = field(default_factory=dict)


def _count(default: int, description: str, *, minimum: int = 1, maximum: int = 1_000_000, **kw) -> Parameter:
    return Parameter(INT, default, minimum, maximum, description, **kw)


def _share(default: str, description: str, *, maximum: str = "1", **kw) -> Parameter:
    return Parameter(DECIMAL, default, "0", maximum, description, **kw)


def _policy(kind: str, name: str, description: str, strategy: str, **parameters: Parameter) -> PolicySpec:
    parameters["strategy"] = Parameter(STRATEGY, strategy, description="what a finding recommends")
    return PolicySpec(kind, name, description, strategy, parameters)


POLICIES: dict[str, PolicySpec] = {
    "serial_complainer": _policy(
        "customer", "Serial complainer", "Many complaints for what the customer buys.", "re_specify",
        min_complaints=_count(3, "complaints in the window before the policy judges"),
        complaints_per_purchase=_share("0.3", "complaints per purchase from which the finding is medium",
                                       maximum="1000"),
        high_complaints_per_purchase=_share("0.6", "complaints per purchase from which it is high", maximum="1000",
                                            at_least="complaints_per_purchase"),
    ),
    "late_payer": _policy(
        "customer", "Chronic late payer", "Invoices paid after their due date, or not at all.", "raise_price",
        min_due=_count(4, "payments due in the window before the policy judges"),
        min_late=_count(2, "late payments needed for any finding"),
        late_rate=_share("0.25", "share of the payments due that were late from which the finding is medium"),
        high_late_rate=_share("0.5", "share late from which it is high", at_least="late_rate"),
        high_average_days_late=_count(30, "average delay in days that makes a medium finding high",
                                      maximum=10_000),
    ),
    "fraud": _policy(
        "customer", "Fraud", "Fraud flags recorded on the contact and not cleared.", "terminate",
        min_flags=_count(1, "flags from which the finding is medium", maximum=1000),
        high_flags=_count(2, "flags from which it is high", maximum=1000, at_least="min_flags"),
        codes=Parameter(STRINGS, [], description="the flag codes that count (empty: every code)"),
    ),
    "deal_seeker": _policy(
        "customer", "Perpetual deal-seeker", "Most of the revenue bought on discount or with a coupon.",
        "raise_price",
        min_purchases=_count(5, "purchases in one currency before the policy judges"),
        discounted_share=_share("0.6", "share of the revenue bought on discount or coupon from which the "
                                       "finding is medium"),
        high_discounted_share=_share("0.9", "share from which it is high", at_least="discounted_share"),
    ),
    "unprofitable": _policy(
        "customer", "Unprofitable", "In an unprofitable quadrant of the profitability matrix, or costing more "
        "to serve than the margin it brings (the analytics snapshot).", "unbundle",
        min_purchases=_count(3, "purchases in the window before the policy judges"),
        quadrants=Parameter(STRINGS, ["worst"], description="profitability quadrants that make the finding "
                                                            "medium (empty: none)", choices=QUADRANTS),
        cost_to_margin=Parameter(DECIMAL, "1", "0", "1000", "cost to serve above the margin times this is medium"),
        high_cost_to_margin=Parameter(DECIMAL, "2", "0", "1000", "cost to serve above the margin times this is "
                                                                 "high", at_least="cost_to_margin"),
    ),
    "late_deliveries": _policy(
        "partner", "Late deliveries", "Deliveries that arrived after their promised date, or not at all.",
        "re_specify",
        min_deliveries=_count(10, "deliveries promised in the window before the policy judges"),
        late_rate=_share("0.15", "share of the deliveries that were late from which the finding is medium"),
        high_late_rate=_share("0.3", "share late from which it is high", at_least="late_rate"),
    ),
    "poor_quality": _policy(
        "partner", "Poor quality", "A large share of the delivered quantity rejected.", "unbundle",
        min_deliveries=_count(10, "deliveries delivered in the window before the policy judges"),
        rejected_share=_share("0.05", "share of the delivered quantity rejected from which the finding is medium"),
        high_rejected_share=_share("0.15", "share rejected from which it is high", at_least="rejected_share"),
    ),
    "repeated_disputes": _policy(
        "partner", "Repeated disputes", "Disputes opened again and again in the window.", "terminate",
        min_disputes=_count(4, "disputes opened in the window from which the finding is medium"),
        high_disputes=_count(8, "disputes opened from which it is high", at_least="min_disputes"),
        min_dispute_rate=_share("0.05", "disputes per delivery needed for any finding (ignored without "
                                        "deliveries)", maximum="1000"),
        categories=Parameter(STRINGS, [], description="the dispute categories that count (empty: every one)"),
    ),
    "price_breaches": _policy(
        "partner", "Price breaches", "Deliveries charged above the agreed price.", "re_specify",
        min_priced=_count(10, "deliveries with an agreed price in the window before the policy judges"),
        min_breaches=_count(2, "breaches needed for any finding"),
        breach_rate=_share("0.1", "share of the priced deliveries above the agreed price from which the finding "
                                  "is medium"),
        high_breach_rate=_share("0.25", "share from which it is high", at_least="breach_rate"),
    ),
}


# --- parameters -------------------------------------------------------------------------------------------------

def _parse(param: Parameter, raw: object) -> tuple[object, str | None]:
    """(the value as Python, None) or (None, why it is not acceptable)."""
    if param.type == INT:
        if isinstance(raw, bool) or not isinstance(raw, int):
            return None, "must be a whole number"
        value = raw
    elif param.type == DECIMAL:
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str, Decimal)):
            return None, "must be a decimal number"
        try:
            value = Decimal(str(raw).strip()) if not isinstance(raw, Decimal) else raw
        except InvalidOperation:
            return None, "must be a decimal number"
        if not value.is_finite():
            return None, "must be a decimal number"
    elif param.type == STRATEGY:
        if raw not in TERMINATION_STRATEGIES:
            return None, f"must be one of {', '.join(TERMINATION_STRATEGIES)}"
        return raw, None
    else:
        if not isinstance(raw, (list, tuple)) or not all(isinstance(s, str) and s.strip() for s in raw):
            return None, "must be a list of non-empty strings"
        unknown = [s for s in raw if param.choices and s not in param.choices]
        if unknown:
            return None, f"{unknown[0]!r} is not one of {', '.join(param.choices)}"
        return tuple(dict.fromkeys(s.strip() for s in raw)), None
    if param.minimum is not None and value < Decimal(param.minimum):
        return None, f"must be at least {param.minimum}"
    if param.maximum is not None and value > Decimal(param.maximum):
        return None, f"must be at most {param.maximum}"
    return value, None


def _as_json(param: Parameter, value: object) -> object:
    if param.type == DECIMAL:
        return str(value)
    return list(value) if param.type == STRINGS else value


def check_parameters(code: str, given: Mapping) -> tuple[dict, dict]:
    """A built-in policy's parameters with the defaults filled in, as JSON values (decimals as strings), and the
    errors by parameter name ({name: [message]}; empty when they are valid). An unknown name is an error; a
    null takes the default. Raises KeyError for a code that is not in POLICIES."""
    values, errors = _values(POLICIES[code], given)
    spec = POLICIES[code]
    return {name: _as_json(spec.parameters[name], value) for name, value in values.items()}, errors


def _values(spec: PolicySpec, given: Mapping) -> tuple[dict, dict]:
    errors: dict[str, list[str]] = {}
    for name in given:
        if name not in spec.parameters:
            errors[str(name)] = [f"unknown parameter; expected one of {', '.join(spec.parameters)}"]
    values = {}
    for name, param in spec.parameters.items():
        raw = given.get(name)
        value, problem = _parse(param, param.default if raw is None else raw)
        if problem:
            errors[name] = [problem]
        else:
            values[name] = value
    for name, param in spec.parameters.items():
        for other, sign, words in ((param.at_least, 1, "at least"), (param.at_most, -1, "at most")):
            if other and name in values and other in values and sign * (values[name] - values[other]) < 0:
                errors.setdefault(name, []).append(f"must be {words} {other} ({_as_json(param, values[other])})")
    return values, errors


# A policy's parameters as the rules read them, by the policy object (kept alive with it, so ids stay unique):
# the same records are applied to every subject of a run, and parsing them each time would cost more than the
# rules do.
_SETTINGS: dict[int, tuple[TerminationPolicy, dict]] = {}
_SETTINGS_KEPT = 512


def _settings(policy: TerminationPolicy) -> dict:
    cached = _SETTINGS.get(id(policy))
    if cached is not None and cached[0] is policy:
        return cached[1]
    values, errors = _values(POLICIES[policy.code], policy.parameters)
    if errors:
        raise ValueError(f"policy {policy.code!r} has invalid parameters: {errors}")
    if len(_SETTINGS) >= _SETTINGS_KEPT:
        _SETTINGS.clear()
    _SETTINGS[id(policy)] = (policy, values)
    return values


# --- the rules --------------------------------------------------------------------------------------------------

def _rate(part: int | Decimal, whole: int | Decimal) -> Decimal:
    return (Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"))


def _percent(rate: Decimal) -> str:
    return f"{(rate * 100).quantize(Decimal('0.1'))}%"


def _severity(value, medium, high) -> str | None:
    return "high" if value >= high else "medium" if value >= medium else None


def _day(moment: date | datetime) -> date:
    return moment.date() if isinstance(moment, datetime) else moment


def _window(history) -> dict:
    """The window as evidence: its first and last day (a customer's history counts instants, a partner's days)."""
    since, as_of = history.since, history.as_of
    return {"since": _day(since).isoformat(), "as_of": _day(as_of).isoformat(), "window_days": (as_of - since).days}


def _finding(code: str, severity: str | None, p: dict, reason: str, evidence: dict, history) -> Finding | None:
    if severity is None:
        return None
    window = _window(history)
    return Finding(code, severity, p["strategy"], f"{reason} in the {window['window_days']} days to "
                                                  f"{window['as_of']}", {**evidence, **window})


def serial_complainer(history: CustomerHistory, p: dict) -> Finding | None:
    """Complaints per purchase (a window without purchases counts as one purchase)."""
    complaints, purchases = history.complaints, history.purchases
    if complaints < p["min_complaints"]:
        return None
    rate = _rate(complaints, max(purchases, 1))
    return _finding("serial_complainer", _severity(rate, p["complaints_per_purchase"],
                                                   p["high_complaints_per_purchase"]), p,
                    f"{complaints} complaints ({history.open_complaints} open) on {purchases} purchases, "
                    f"{rate:.2f} per purchase",
                    {"complaints": complaints, "open_complaints": history.open_complaints, "purchases": purchases,
                     "complaints_per_purchase": rate}, history)


def late_payer(history: CustomerHistory, p: dict) -> Finding | None:
    """The share of the payments due that were late; a long average delay makes a medium finding high."""
    pay = history.payments
    if pay.due < p["min_due"] or pay.late < p["min_late"]:
        return None
    rate, average = pay.late_rate, pay.average_days_late  # due >= min_due >= 1: a rate
    severity = _severity(rate, p["late_rate"], p["high_late_rate"])
    if severity == "medium" and average >= p["high_average_days_late"]:
        severity = "high"
    return _finding("late_payer", severity, p,
                    f"{pay.late} of {pay.due} invoice payments late ({_percent(rate)}, {pay.unpaid_overdue} still "
                    f"unpaid), {average} days late on average",
                    {"due": pay.due, "paid": pay.paid, "late": pay.late, "unpaid_overdue": pay.unpaid_overdue,
                     "late_rate": rate, "average_days_late": average, "max_days_late": pay.max_days_late}, history)


def fraud(history: CustomerHistory, p: dict) -> Finding | None:
    """Uncleared fraud flags (of the given codes)."""
    flags = [f for f in history.fraud_flags if not p["codes"] or f.code in p["codes"]]
    if len(flags) < p["min_flags"]:
        return None
    last = max(f.flagged_at for f in flags)
    codes = ", ".join(sorted({f.code for f in flags}))
    return _finding("fraud", "high" if len(flags) >= p["high_flags"] else "medium", p,
                    f"{len(flags)} fraud flag{'s' if len(flags) != 1 else ''} on record ({codes}), the last on "
                    f"{last.date().isoformat()}",
                    {"flags": len(flags), "codes": codes, "last_flagged_at": last.isoformat()}, history)


def deal_seeker(history: CustomerHistory, p: dict) -> Finding | None:
    """The share of a currency's revenue bought on discount or coupon (the currency with the highest share)."""
    judged = [s for s in history.spend if s.purchases >= p["min_purchases"] and s.revenue > 0]
    if not judged:
        return None
    top = max(judged, key=lambda s: s.discounted_revenue / s.revenue)
    share = top.discounted_share
    return _finding("deal_seeker", _severity(share, p["discounted_share"], p["high_discounted_share"]), p,
                    f"{_percent(share)} of {top.revenue:.2f} {top.currency} bought on discount or coupon "
                    f"({top.discounted_purchases} of {top.purchases} purchases)",
                    {"currency": top.currency, "purchases": top.purchases, "revenue": top.revenue,
                     "discounted_purchases": top.discounted_purchases, "discounted_revenue": top.discounted_revenue,
                     "discount_total": top.discount_total, "coupon_purchases": top.coupon_purchases,
                     "discounted_share": share}, history)


def unprofitable(history: CustomerHistory, p: dict) -> Finding | None:
    """Cost to serve against margin, and the profitability quadrant, from the analytics snapshot."""
    row = history.analytics
    if row is None or history.purchases < p["min_purchases"]:
        return None
    margin, cost = row.margin, row.cost_to_serve
    if cost > margin * p["high_cost_to_margin"]:
        severity = "high"
    elif cost > margin * p["cost_to_margin"] or row.quadrant in p["quadrants"]:
        severity = "medium"
    else:
        return None
    quadrant = f", {row.quadrant} quadrant" if row.quadrant else ""
    return _finding("unprofitable", severity, p,
                    f"cost to serve {cost:.2f} {row.currency} against a margin of {margin:.2f}{quadrant}, "
                    f"{history.purchases} purchases",
                    {"currency": row.currency, "margin": margin, "cost_to_serve": cost, "quadrant": row.quadrant,
                     "clv": row.clv, "purchases": history.purchases,
                     "analytics_as_of": row.as_of.isoformat()}, history)


def late_deliveries(history: PartnerTerminationHistory, p: dict) -> Finding | None:
    """The share of the deliveries promised in the window that were late or did not arrive."""
    deliveries, late = history.scorecard.deliveries, history.late_deliveries
    if deliveries < p["min_deliveries"]:
        return None
    rate = _rate(late, deliveries)
    return _finding("late_deliveries", _severity(rate, p["late_rate"], p["high_late_rate"]), p,
                    f"{late} of {deliveries} deliveries late ({_percent(rate)})",
                    {"deliveries": deliveries, "on_time": history.scorecard.on_time, "late": late,
                     "late_rate": rate}, history)


def poor_quality(history: PartnerTerminationHistory, p: dict) -> Finding | None:
    """The share of the delivered quantity that was rejected."""
    card = history.scorecard
    if card.delivered < p["min_deliveries"] or card.quantity_delivered <= 0:
        return None
    share = _rate(card.quantity_rejected, card.quantity_delivered)
    return _finding("poor_quality", _severity(share, p["rejected_share"], p["high_rejected_share"]), p,
                    f"{_percent(share)} of the delivered quantity rejected ({card.quantity_rejected} of "
                    f"{card.quantity_delivered}, {card.delivered} deliveries)",
                    {"delivered": card.delivered, "quantity_delivered": card.quantity_delivered,
                     "quantity_rejected": card.quantity_rejected, "rejected_share": share}, history)


def repeated_disputes(history: PartnerTerminationHistory, p: dict) -> Finding | None:
    """Disputes opened in the window (of the given categories), if they are not rare for the volume delivered."""
    counted = [d for d in history.disputes if d.opened and (not p["categories"] or d.category in p["categories"])]
    opened = sum(d.opened for d in counted)
    deliveries = history.scorecard.deliveries
    if opened < p["min_disputes"]:
        return None
    rate = _rate(opened, deliveries) if deliveries else None
    if rate is not None and rate < p["min_dispute_rate"]:
        return None
    categories = ", ".join(f"{d.opened} {d.category}" for d in sorted(counted, key=lambda d: d.category))
    per_delivery = f", {rate} per delivery" if rate is not None else ""
    return _finding("repeated_disputes", "high" if opened >= p["high_disputes"] else "medium", p,
                    f"{opened} disputes opened ({categories}){per_delivery}",
                    {"opened": opened, "unresolved": sum(d.unresolved for d in counted), "categories": categories,
                     "deliveries": deliveries, "dispute_rate": rate}, history)


def price_breaches(history: PartnerTerminationHistory, p: dict) -> Finding | None:
    """The share of the deliveries with an agreed price that were charged above it."""
    priced, breaches = history.scorecard.priced, history.price_breaches
    if priced < p["min_priced"] or breaches < p["min_breaches"]:
        return None
    rate = _rate(breaches, priced)
    return _finding("price_breaches", _severity(rate, p["breach_rate"], p["high_breach_rate"]), p,
                    f"{breaches} of {priced} priced deliveries above the agreed price ({_percent(rate)})",
                    {"priced": priced, "breaches": breaches, "breach_rate": rate}, history)


RULES: dict[str, Callable[[object, dict], Finding | None]] = {
    "serial_complainer": serial_complainer, "late_payer": late_payer, "fraud": fraud, "deal_seeker": deal_seeker,
    "unprofitable": unprofitable, "late_deliveries": late_deliveries, "poor_quality": poor_quality,
    "repeated_disputes": repeated_disputes, "price_breaches": price_breaches,
}


def evaluate(subject: TerminationSubject, history, policies) -> list[Finding]:
    """The findings of the given built-in policies on one subject.

    A policy of the other subject kind, or a code this plugin does not know, finds nothing.
    """
    found = []
    for policy in policies:
        spec = POLICIES.get(policy.code)
        if spec is None or spec.kind != subject.kind:
            continue
        finding = RULES[policy.code](history, _settings(policy))
        if finding is not None:
            found.append(finding)
    return found


@hookimpl
def crm_evaluate_termination(subject: TerminationSubject, history, policies) -> list[Finding]:
    return evaluate(subject, history, policies)
