"""Plain, frozen values exchanged between the services and plugins (never ORM objects)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal
from types import MappingProxyType


@dataclass(frozen=True, kw_only=True)
class LeadInput:
    """What a plugin sees of a lead: its contact data and where it came from (keyword arguments only)."""

    id: str | None = None
    email: str
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    job_title: str | None = None
    phone: str | None = None
    source: str | None = None
    campaign: str | None = None

    @property
    def email_domain(self) -> str:
        """The lower-cased part of the e-mail after the last '@' ('' when there is none)."""
        local, at, domain = (self.email or "").strip().rpartition("@")
        return domain.lower().strip(".") if at and local else ""


_CHECKED = "_crm_checked"


def _mark_checked(value) -> None:
    # The host skips its own check of a value that passed this one (frozen, so it still holds); one built
    # around __init__ (object.__new__) carries no mark and is checked by the host.
    object.__setattr__(value, _CHECKED, True)


def was_checked(value) -> bool:
    """True when `value` passed its own validation when it was built."""
    return getattr(value, "__dict__", {}).get(_CHECKED, False)


@dataclass(frozen=True)
class ScoreFactor:
    """One piece of evidence a plugin contributes to a lead's score."""

    code: str
    points: int
    reason: str

    def __post_init__(self) -> None:
        _refuse_if(self, factor_problem(self))


def _refuse_if(value: object, problem: str | None) -> None:
    """A plugin value's constructor: TypeError naming the type and the problem, else mark it checked.

    It fails inside the plugin that built a bad value, so the author sees it in their own tests."""
    if problem:
        raise TypeError(f"invalid {type(value).__name__}: {problem}")
    _mark_checked(value)


def _evidence_problem(item: object, expected: type, amount: str, limit: int | None = None) -> str | None:
    """Why `item` is not a well-formed `expected` - a non-empty `code`, an int `amount` (within ±limit when
    given) and a string `reason` - or None when it is. Score factors, point awards and risk factors share it."""
    if not isinstance(item, expected):
        return f"expected {expected.__name__}, got {type(item).__name__}"
    if not isinstance(item.code, str) or not item.code.strip():
        return f"code must be a non-empty string, got {item.code!r}"
    value = getattr(item, amount)
    # bool is a subclass of int; True as "points" is almost certainly a bug, not one point.
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{amount} must be an int, got {type(value).__name__} {value!r}"
    if limit is not None and abs(value) > limit:
        return f"{amount} must lie within ±{limit}, got {value}"
    if not isinstance(item.reason, str):
        return f"reason must be a string, got {type(item.reason).__name__}"
    return None


def factor_problem(factor: object) -> str | None:
    """Why `factor` is not a well-formed ScoreFactor, or None when it is."""
    return _evidence_problem(factor, ScoreFactor, "points")


@dataclass(frozen=True)
class AppliedFactor:
    """A factor as counted in a decision, with the name of the plugin that gave it."""

    plugin: str
    code: str
    points: int
    reason: str

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


# Why a plugin's contribution is missing from a decision (`PluginFailure.code`).
PLUGIN_ERROR = "plugin_error"  # the implementation raised
PLUGIN_MALFORMED_RESULT = "plugin_malformed_result"  # it returned something the hook does not accept
PLUGIN_TIMEOUT = "plugin_timeout"  # it did not answer within the time budget
# not called: an earlier call past its budget has not returned yet, or (termination policies) the plugin a policy
# names is not loaded
PLUGIN_UNAVAILABLE = "plugin_unavailable"
FAILURE_CODES = (PLUGIN_ERROR, PLUGIN_MALFORMED_RESULT, PLUGIN_TIMEOUT, PLUGIN_UNAVAILABLE)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin whose contribution was dropped from a decision: the plugin, the hook and a code saying why.

    `detail` (the exception, or what was malformed) is for the log and the author's test harness. It is not
    part of `to_dict()` and the services never store or return it: an exception's text may carry anything.
    """

    plugin: str
    hook: str
    code: str
    detail: str = field(default="", compare=False)

    def to_dict(self) -> dict:
        """JSON-ready form, without `detail`."""
        return {"plugin": self.plugin, "hook": self.hook, "code": self.code}


@dataclass(frozen=True)
class ScoreDecision:
    """A lead's score with every factor behind it and the plugins that failed to contribute."""

    score: int
    factors: tuple[AppliedFactor, ...] = ()
    degraded: tuple[PluginFailure, ...] = ()

    MIN_SCORE = 0
    MAX_SCORE = 100

    @classmethod
    def from_factors(cls, factors, degraded=()) -> ScoreDecision:
        """Sum the factors' points, clamped to 0..100."""
        factors = tuple(factors)
        total = sum(f.points for f in factors)
        return cls(score=max(cls.MIN_SCORE, min(cls.MAX_SCORE, total)), factors=factors, degraded=tuple(degraded))

    @property
    def is_degraded(self) -> bool:
        """True when at least one plugin's contribution is missing."""
        return bool(self.degraded)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "score": self.score,
            "factors": [f.to_dict() for f in self.factors],
            "degraded": [d.to_dict() for d in self.degraded],
        }


# --- loyalty points -------------------------------------------------------------------------------------------

# An award beyond this many points is treated as a plugin bug (it would overflow the ledger's sums).
MAX_AWARD_POINTS = 10**15


@dataclass(frozen=True, kw_only=True)
class PurchaseInput:
    """What a plugin sees of a purchase: who bought, how much, in which currency, when (keyword arguments only).

    `amount` is a `Decimal`, never a float; `currency` is a three-letter ISO 4217 code such as "EUR".
    """

    id: str | None = None
    member_id: str | None = None
    contact_id: str | None = None
    amount: Decimal
    currency: str
    occurred_at: datetime
    external_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class ProgramInput:
    """What a plugin sees of the loyalty program the purchase earns in (keyword arguments only)."""

    id: str | None = None
    code: str
    name: str
    points_per_unit: Decimal
    currency: str


@dataclass(frozen=True)
class PointAward:
    """Points a plugin awards for one purchase, with the reason shown to users."""

    code: str
    points: int
    reason: str

    def __post_init__(self) -> None:
        _refuse_if(self, award_problem(self))


def award_problem(award: object) -> str | None:
    """Why `award` is not a well-formed PointAward, or None when it is."""
    return _evidence_problem(award, PointAward, "points", MAX_AWARD_POINTS)


@dataclass(frozen=True)
class PointsDecision:
    """The points a purchase earns, with every award behind them and the plugins that failed to contribute."""

    points: int
    factors: tuple[AppliedFactor, ...] = ()
    degraded: tuple[PluginFailure, ...] = ()

    @classmethod
    def from_awards(cls, factors, degraded=()) -> PointsDecision:
        """Sum the awards' points; a purchase never earns less than 0 (penalties cannot take points away)."""
        factors = tuple(factors)
        return cls(points=max(0, sum(f.points for f in factors)), factors=factors, degraded=tuple(degraded))

    @property
    def is_degraded(self) -> bool:
        """True when at least one plugin's contribution is missing."""
        return bool(self.degraded)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "points": self.points,
            "factors": [f.to_dict() for f in self.factors],
            "degraded": [d.to_dict() for d in self.degraded],
        }


# --- lifecycle stages -----------------------------------------------------------------------------------------

# The stages a customer can be in, from no purchase yet to gone quiet (the contacts analytics' vocabulary).
LIFECYCLE_STAGES = ("prospect", "new", "general", "repeater", "loyal", "lapsed")


@dataclass(frozen=True, kw_only=True)
class CustomerInput:
    """What a plugin sees of a customer when a refresh decides their lifecycle stage (keyword arguments only).

    The facts are over every currency and describe the customer as of `as_of` (the refresh's instant): the
    purchases made before it, and the last of them. `last_purchase_at` is None for a prospect.
    """

    contact_id: str
    purchase_count: int
    last_purchase_at: datetime | None = None
    as_of: datetime

    @property
    def days_since_last_purchase(self) -> int | None:
        """Whole days from the last purchase to `as_of`; None when there is none."""
        if self.last_purchase_at is None:
            return None
        return (self.as_of - self.last_purchase_at).days


def stage_problem(stage: object) -> str | None:
    """Why `stage` is not a lifecycle stage a plugin may return, or None when it is."""
    if not isinstance(stage, str):
        return f"expected one of {', '.join(LIFECYCLE_STAGES)} or None, got {type(stage).__name__}"
    if stage not in LIFECYCLE_STAGES:
        return f"unknown stage {stage!r}; expected one of {', '.join(LIFECYCLE_STAGES)}"
    return None


@dataclass(frozen=True)
class StageDecision:
    """A customer's lifecycle stage: the rules' stage, or the first plugin's that answered, and who decided.

    `source` is "rules" when no plugin answered, else the name of the plugin whose stage won.
    """

    stage: str
    source: str = "rules"
    degraded: tuple[PluginFailure, ...] = ()

    RULES = "rules"

    @property
    def is_degraded(self) -> bool:
        """True when at least one plugin failed to answer."""
        return bool(self.degraded)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"stage": self.stage, "source": self.source, "degraded": [d.to_dict() for d in self.degraded]}


# --- partner risk ---------------------------------------------------------------------------------------------

# The levels a partner's risk score falls into: `low` below MEDIUM_RISK_FROM, `high` from HIGH_RISK_FROM.
RISK_LEVELS = ("low", "medium", "high")
MEDIUM_RISK_FROM = 30
HIGH_RISK_FROM = 60
# A factor's weight beyond ±MAX_RISK_WEIGHT is treated as a plugin bug (the score is clamped to 0..100 anyway).
MAX_RISK_WEIGHT = 100


@dataclass(frozen=True, kw_only=True)
class PartnerInput:
    """What a plugin sees of a partner: who it is and where it stands (keyword arguments only).

    `type` is one of supplier, vendor, distributor, reseller; `status` one of prospect, onboarding, active,
    suspended, terminated; `country` an ISO 3166 alpha-2 code or None.
    """

    id: str
    name: str
    type: str
    status: str
    country: str | None = None


def _rate(part: Decimal, whole: Decimal) -> Decimal | None:
    return None if not whole else (Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"))


@dataclass(frozen=True, kw_only=True)
class DeliveryPeriod:
    """The deliveries a partner owed in one calendar month (by their promised date), as counts and quantities.

    `first_day`..`last_day` is the month, cut at the history's `as_of` for the current one. `on_time` counts
    the deliveries that arrived on or before their promised date; one that did not arrive at all is late.
    The rates are derived (four decimal places, 0..1) and are None when there is nothing to divide by.
    """

    first_day: date
    last_day: date
    deliveries: int = 0
    on_time: int = 0
    quantity_ordered: Decimal = Decimal(0)
    quantity_delivered: Decimal = Decimal(0)
    quantity_rejected: Decimal = Decimal(0)

    @property
    def on_time_rate(self) -> Decimal | None:
        """Share of the deliveries that arrived on time."""
        return _rate(Decimal(self.on_time), Decimal(self.deliveries))

    @property
    def fill_rate(self) -> Decimal | None:
        """Quantity delivered over quantity ordered."""
        return _rate(self.quantity_delivered, self.quantity_ordered)

    @property
    def quality_rate(self) -> Decimal | None:
        """Share of the delivered quantity that was not rejected."""
        return _rate(self.quantity_delivered - self.quantity_rejected, self.quantity_delivered)


@dataclass(frozen=True, kw_only=True)
class OpenDisputes:
    """A partner's unresolved disputes (open, investigating or escalated) of one category in one currency."""

    category: str
    currency: str
    count: int
    amount: Decimal
    escalated: int = 0
    oldest_opened_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class SpendShare:
    """What was delivered over the last 12 months in one currency: by this partner and by all partners."""

    currency: str
    partner_amount: Decimal
    total_amount: Decimal

    @property
    def share(self) -> Decimal | None:
        """The partner's share of the total, 0..1 (four decimal places); None when nothing was delivered."""
        return _rate(self.partner_amount, self.total_amount)


@dataclass(frozen=True, kw_only=True)
class ContractSnapshot:
    """One of the partner's contracts with its terms in force, and what an open proposal on it would change.

    `proposed_effective_to` / `proposed_auto_renew` are the values an open proposal on the contract offers
    for those terms (None when there is no open proposal, or it leaves that term alone).
    """

    id: str
    title: str
    version: int
    effective_from: date
    effective_to: date | None = None
    auto_renew: bool = False
    notice_period_days: int = 0
    proposed_effective_to: date | None = None
    proposed_auto_renew: bool | None = None


@dataclass(frozen=True, kw_only=True)
class PartnerHistory:
    """A plain snapshot of a partner's record as of one day, built by the partners service in a few queries.

    periods: the last calendar months (oldest first; the last one is the month of `as_of`, up to that day).
    open_disputes: the unresolved disputes by category and currency.
    spend: per currency, the amount this partner delivered over the 12 months up to `as_of` and the total of
        every partner (its share is the concentration of spend on it).
    contracts: every contract of the partner with its terms in force.
    """

    as_of: date
    periods: tuple[DeliveryPeriod, ...] = ()
    open_disputes: tuple[OpenDisputes, ...] = ()
    spend: tuple[SpendShare, ...] = ()
    contracts: tuple[ContractSnapshot, ...] = ()

    @property
    def open_dispute_count(self) -> int:
        """How many disputes are unresolved, in every category and currency."""
        return sum(d.count for d in self.open_disputes)


@dataclass(frozen=True)
class RiskFactor:
    """One piece of evidence a plugin contributes to a partner's risk: a weight (risk points) and a reason."""

    code: str
    weight: int
    reason: str

    def __post_init__(self) -> None:
        _refuse_if(self, risk_factor_problem(self))


def risk_factor_problem(factor: object) -> str | None:
    """Why `factor` is not a well-formed RiskFactor, or None when it is."""
    return _evidence_problem(factor, RiskFactor, "weight", MAX_RISK_WEIGHT)


@dataclass(frozen=True)
class AppliedRiskFactor:
    """A risk factor as counted in an assessment, with the name of the plugin that gave it."""

    plugin: str
    code: str
    weight: int
    reason: str

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


def risk_level(score: int) -> str:
    """`low`, `medium` or `high` for a score of 0..100 (MEDIUM_RISK_FROM, HIGH_RISK_FROM)."""
    if score >= HIGH_RISK_FROM:
        return "high"
    return "medium" if score >= MEDIUM_RISK_FROM else "low"


@dataclass(frozen=True)
class RiskAssessment:
    """A partner's risk: the score, its level, every factor behind it and the plugins that failed to contribute."""

    score: int
    level: str
    factors: tuple[AppliedRiskFactor, ...] = ()
    degraded: tuple[PluginFailure, ...] = ()

    @classmethod
    def from_factors(cls, factors, degraded=()) -> RiskAssessment:
        """Sum the factors' weights, clamped to 0..100, and name the level."""
        factors = tuple(factors)
        score = max(0, min(100, sum(f.weight for f in factors)))
        return cls(score=score, level=risk_level(score), factors=factors, degraded=tuple(degraded))

    @property
    def is_degraded(self) -> bool:
        """True when at least one plugin's contribution is missing."""
        return bool(self.degraded)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "score": self.score,
            "level": self.level,
            "factors": [f.to_dict() for f in self.factors],
            "degraded": [d.to_dict() for d in self.degraded],
        }


# --- partner scorecards ---------------------------------------------------------------------------------------

# A criterion's weight beyond this is treated as a plugin bug (it would drown every other measure).
MAX_CRITERION_WEIGHT = Decimal(1000)


@dataclass(frozen=True, kw_only=True)
class ScorecardPeriod:
    """The period a scorecard covers: its label (`2026-Q3`, `2026-09` or `2026`) and its first and last day."""

    label: str
    start: date
    end: date


@dataclass(frozen=True, kw_only=True)
class ScorecardMetrics:
    """The built-in measures of one partner over one period, from the deliveries promised in it.

    Rates are `Decimal`s from 0 to 1 (the dispute rate may exceed 1), or None when there is nothing to
    measure: no deliveries, nothing delivered, no delivery with an agreed amount. Quantities are `Decimal`s.
    """

    deliveries: int
    delivered: int
    on_time: int
    disputes: int
    priced: int
    within_price: int
    quantity_ordered: Decimal
    quantity_delivered: Decimal
    quantity_rejected: Decimal
    on_time_rate: Decimal | None = None
    fill_rate: Decimal | None = None
    quality_rate: Decimal | None = None
    dispute_rate: Decimal | None = None
    price_adherence: Decimal | None = None


@dataclass(frozen=True)
class ScoreCriterion:
    """One criterion a plugin adds to a partner's scorecard: a score from 0 to 1, its weight and the reason.

    `score` and `weight` are `Decimal` or `int` (never float or bool); the weight is at least 0.
    """

    code: str
    score: Decimal
    weight: Decimal
    reason: str

    def __post_init__(self) -> None:
        _refuse_if(self, criterion_problem(self))


def _exact_number(value) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, Decimal) and value.is_finite())


def criterion_problem(criterion: object) -> str | None:
    """Why `criterion` is not a well-formed ScoreCriterion, or None when it is."""
    if not isinstance(criterion, ScoreCriterion):
        return f"expected ScoreCriterion, got {type(criterion).__name__}"
    if not isinstance(criterion.code, str) or not criterion.code.strip():
        return f"code must be a non-empty string, got {criterion.code!r}"
    if not _exact_number(criterion.score) or not 0 <= criterion.score <= 1:
        return f"score must be a Decimal or int from 0 to 1, got {type(criterion.score).__name__} {criterion.score!r}"
    if not _exact_number(criterion.weight) or not 0 <= criterion.weight <= MAX_CRITERION_WEIGHT:
        return (f"weight must be a Decimal or int from 0 to {MAX_CRITERION_WEIGHT}, "
                f"got {type(criterion.weight).__name__} {criterion.weight!r}")
    if not isinstance(criterion.reason, str):
        return f"reason must be a string, got {type(criterion.reason).__name__}"
    return None


@dataclass(frozen=True)
class AppliedCriterion:
    """A criterion as counted in a scorecard, with the name of the plugin that gave it."""

    plugin: str
    code: str
    score: Decimal
    weight: Decimal
    reason: str

    def to_dict(self) -> dict:
        """JSON-ready form (score and weight as decimal strings)."""
        return {"plugin": self.plugin, "code": self.code, "score": str(self.score), "weight": str(self.weight),
                "reason": self.reason}


@dataclass(frozen=True)
class PartnerScoreDecision:
    """The criteria plugins added to one scorecard, and the plugins that failed to contribute."""

    criteria: tuple[AppliedCriterion, ...] = ()
    degraded: tuple[PluginFailure, ...] = ()

    @property
    def is_degraded(self) -> bool:
        """True when at least one plugin's contribution is missing."""
        return bool(self.degraded)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"criteria": [c.to_dict() for c in self.criteria], "degraded": [d.to_dict() for d in self.degraded]}


# --- termination policies (inputs) ------------------------------------------------------------------------------

# What a termination finding may recommend, from the mildest to the strongest.
TERMINATION_STRATEGIES = ("retain", "re_specify", "unbundle", "raise_price", "terminate")
FINDING_SEVERITIES = ("low", "medium", "high")
SUBJECT_KINDS = ("customer", "partner")


@dataclass(frozen=True, kw_only=True)
class TerminationSubject:
    """Whom a termination policy judges: a customer (a contact) or a partner.

    `kind` is ``"customer"`` or ``"partner"``; `id` the contact's or partner's id (a UUID string); `name` a
    display name (the contact's full name or e-mail, the partner's name); `status` the partner's status
    (prospect, onboarding, active, suspended, terminated) or the contact's (``active`` or ``terminated``).
    """

    kind: str
    id: str
    name: str | None = None
    status: str | None = None


@dataclass(frozen=True, kw_only=True)
class TerminationPolicy:
    """One policy a plugin is asked to apply: its `code` and the `parameters` stored on the policy record.

    `parameters` is a read-only mapping of plain JSON values (the built-in policies' defaults filled in).
    """

    code: str
    parameters: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", MappingProxyType(dict(self.parameters)))


@dataclass(frozen=True, kw_only=True)
class CustomerSpend:
    """A customer's purchases in one currency over the history's window (money as `Decimal`).

    `discounted_*` count the purchases bought with a discount or a coupon code; `returned_amount` is what
    returns of those purchases gave back.
    """

    currency: str
    purchases: int = 0
    revenue: Decimal = Decimal(0)
    discounted_purchases: int = 0
    discounted_revenue: Decimal = Decimal(0)
    discount_total: Decimal = Decimal(0)
    coupon_purchases: int = 0
    returns: int = 0
    returned_amount: Decimal = Decimal(0)

    @property
    def discounted_share(self) -> Decimal | None:
        """Share of the revenue bought on discount or coupon, 0..1 (four places); None without revenue."""
        return _rate(self.discounted_revenue, self.revenue)


@dataclass(frozen=True, kw_only=True)
class PaymentSummary:
    """The customer's invoice payments due in the history's window.

    `late` counts those paid after their due date plus those unpaid and already overdue at `as_of`;
    `days_late_total` / `max_days_late` add up / take the largest delay (an unpaid overdue invoice counts
    up to `as_of`).
    """

    due: int = 0
    paid: int = 0
    late: int = 0
    unpaid_overdue: int = 0
    days_late_total: int = 0
    max_days_late: int = 0

    @property
    def late_rate(self) -> Decimal | None:
        """Share of the payments due that were (or are) late, 0..1; None when none was due."""
        return _rate(Decimal(self.late), Decimal(self.due))

    @property
    def average_days_late(self) -> Decimal | None:
        """Average delay of the late payments in days (two places); None when none was late."""
        return None if not self.late else (Decimal(self.days_late_total) / self.late).quantize(Decimal("0.01"))


@dataclass(frozen=True, kw_only=True)
class FraudFlag:
    """A fraud flag recorded on the contact and not cleared: a short `code`, the `reason`, when."""

    code: str
    reason: str
    flagged_at: datetime


@dataclass(frozen=True, kw_only=True)
class CustomerAnalytics:
    """The customer's row of the current analytics snapshot (docs/analytics.md), in the snapshot's currency.

    `quadrant` is the profitability matrix cell (best, invest, hold, worst) or None; money as `Decimal`.
    """

    as_of: datetime
    currency: str
    quadrant: str | None = None
    margin: Decimal = Decimal(0)
    cost_to_serve: Decimal = Decimal(0)
    clv: Decimal | None = None


@dataclass(frozen=True, kw_only=True)
class CustomerHistory:
    """A plain snapshot of a customer's record, built by the contacts service for termination policies.

    Everything counts what happened from `since` up to `as_of` (the window), except `fraud_flags` (every
    flag not cleared) and `analytics` (the current snapshot's row, or None when there is none).
    complaints / open_complaints: complaint interactions recorded in the window, and how many are unresolved.
    purchases: the purchases in the window, every currency; `spend` breaks them down per currency.
    """

    as_of: datetime
    since: datetime
    complaints: int = 0
    open_complaints: int = 0
    purchases: int = 0
    spend: tuple[CustomerSpend, ...] = ()
    payments: PaymentSummary = field(default_factory=PaymentSummary)
    fraud_flags: tuple[FraudFlag, ...] = ()
    analytics: CustomerAnalytics | None = None

    @property
    def complaints_per_purchase(self) -> Decimal | None:
        """Complaints in the window over purchases in the window (four places); None without purchases."""
        return _rate(Decimal(self.complaints), Decimal(self.purchases))


@dataclass(frozen=True, kw_only=True)
class DisputeCount:
    """How many of a partner's disputes of one category were opened in the window, and how many are unresolved."""

    category: str
    opened: int = 0
    unresolved: int = 0


@dataclass(frozen=True, kw_only=True)
class PartnerTerminationHistory:
    """A plain snapshot of a partner's record, built by the partners service for termination policies.

    scorecard: the built-in scorecard measures over the deliveries promised from `since` to `as_of` (late
        deliveries are ``deliveries - on_time``; price breaches ``priced - within_price``).
    disputes: per category, the disputes opened in the window and those unresolved now.
    """

    as_of: date
    since: date
    scorecard: ScorecardMetrics
    disputes: tuple[DisputeCount, ...] = ()

    @property
    def late_deliveries(self) -> int:
        return self.scorecard.deliveries - self.scorecard.on_time

    @property
    def price_breaches(self) -> int:
        return self.scorecard.priced - self.scorecard.within_price

    @property
    def disputes_opened(self) -> int:
        return sum(d.opened for d in self.disputes)


# --- termination policies (findings) ----------------------------------------------------------------------------

_STRATEGY_RANK = {name: rank for rank, name in enumerate(TERMINATION_STRATEGIES)}
_SEVERITY_RANK = {name: rank for rank, name in enumerate(FINDING_SEVERITIES)}


@dataclass(frozen=True)
class Finding:
    """What one termination policy found about one subject: its `code` (the policy's), a `severity` (low,
    medium, high), the recommended `strategy` (one of TERMINATION_STRATEGIES), a short `reason` naming the
    numbers, and the `evidence`: a mapping of names to str, int, bool, None or `Decimal` (never float), kept
    read-only and stored with the recommendation.
    """

    code: str
    severity: str
    strategy: str
    reason: str
    evidence: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.evidence, Mapping):
            object.__setattr__(self, "evidence", MappingProxyType(dict(self.evidence)))
        _refuse_if(self, finding_problem(self))


def _evidence_value_problem(name: object, value: object) -> str | None:
    if not isinstance(name, str) or not name:
        return f"evidence names must be non-empty strings, got {name!r}"
    if value is None or isinstance(value, (str, int)):  # bool is an int
        return None
    if isinstance(value, Decimal) and value.is_finite():
        return None
    return f"evidence {name!r} must be a str, int, bool, None or finite Decimal, got {type(value).__name__} {value!r}"


def finding_problem(item: object) -> str | None:
    """Why `item` is not a well-formed Finding, or None when it is."""
    if not isinstance(item, Finding):
        return f"expected Finding, got {type(item).__name__}"
    if not isinstance(item.code, str) or not item.code.strip():
        return f"code must be a non-empty string, got {item.code!r}"
    if not isinstance(item.severity, str) or item.severity not in _SEVERITY_RANK:
        return f"severity must be one of {', '.join(FINDING_SEVERITIES)}, got {item.severity!r}"
    if not isinstance(item.strategy, str) or item.strategy not in _STRATEGY_RANK:
        return f"strategy must be one of {', '.join(TERMINATION_STRATEGIES)}, got {item.strategy!r}"
    if not isinstance(item.reason, str):
        return f"reason must be a string, got {type(item.reason).__name__}"
    if not isinstance(item.evidence, Mapping):
        return f"evidence must be a mapping, got {type(item.evidence).__name__}"
    for name, value in item.evidence.items():
        problem = _evidence_value_problem(name, value)
        if problem:
            return problem
    return None


def _json_value(value: object) -> object:
    return str(value) if isinstance(value, Decimal) else value


@dataclass(frozen=True)
class AppliedFinding:
    """A finding as counted in an evaluation, with the name of the plugin that gave it."""

    plugin: str
    code: str
    severity: str
    strategy: str
    reason: str
    evidence: Mapping[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form (Decimal evidence as decimal strings)."""
        return {"plugin": self.plugin, "code": self.code, "severity": self.severity, "strategy": self.strategy,
                "reason": self.reason, "evidence": {k: _json_value(v) for k, v in self.evidence.items()}}


@dataclass(frozen=True)
class TerminationEvaluation:
    """One subject judged by a policy set: every finding with its plugin, and the plugins that failed.

    The subject is flagged when there is at least one finding; its `severity` is the highest of them and its
    `strategy` the strongest (in TERMINATION_STRATEGIES' order) among the findings of that severity.
    """

    findings: tuple[AppliedFinding, ...] = ()
    degraded: tuple[PluginFailure, ...] = ()

    @property
    def flagged(self) -> bool:
        """True when at least one policy found something."""
        return bool(self.findings)

    @property
    def severity(self) -> str | None:
        """The highest severity among the findings; None when there is none."""
        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=_SEVERITY_RANK.__getitem__)

    @property
    def strategy(self) -> str | None:
        """The strongest strategy among the findings of the highest severity; None when there is none."""
        severity = self.severity
        if severity is None:
            return None
        return max((f.strategy for f in self.findings if f.severity == severity), key=_STRATEGY_RANK.__getitem__)

    @property
    def is_degraded(self) -> bool:
        """True when at least one plugin's contribution is missing."""
        return bool(self.degraded)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "flagged": self.flagged,
            "severity": self.severity,
            "strategy": self.strategy,
            "findings": [f.to_dict() for f in self.findings],
            "degraded": [d.to_dict() for d in self.degraded],
        }
