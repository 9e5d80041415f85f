"""A partner's scorecard for a period (a quarter, a month or a year), computed from its deliveries when asked.

The period's deliveries are those *promised* in it (a late delivery counts against the period it was owed in,
not the one it arrived in). From them:

- on-time rate: of the deliveries that arrived, the share that arrived on or before the promised day;
- fill rate: quantity delivered / quantity ordered;
- quality rate: 1 - quantity rejected / quantity delivered;
- dispute rate: disputes opened in the period (by `opened_at`, UTC) / deliveries promised in it;
- price adherence: of the deliveries with an agreed amount, the share that cost no more than agreed.

A rate with nothing to divide by is null. The overall score is the weighted average of the rates that have a
value (the dispute rate counts as `1 - rate`, at least 0) and of the criteria plugins add through
`crm_score_partner`; the weights come from CRM_PARTNERS_SCORECARD_WEIGHTS. Nothing is stored: every figure is
read from the deliveries and disputes in one query, however many periods a trend covers. `range_metrics` measures
many partners over any range of days the same way, in one query (termination histories use it).
"""
from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from crm_plugins.types import PartnerInput, PartnerScoreDecision, ScorecardMetrics, ScorecardPeriod
from sqlalchemy import and_, case, func, literal, select, union_all

from services.common.problems import NotFound, Unprocessable
from services.common.settings import SettingsError
from services.common.uow import UnitOfWork

from .models import Delivery, Dispute, Partner

RATE_PLACES = Decimal("0.0001")
MEASURES = ("on_time_rate", "fill_rate", "quality_rate", "dispute_rate", "price_adherence")
DEFAULT_WEIGHTS: dict[str, Decimal] = {"on_time_rate": Decimal(30), "fill_rate": Decimal(25),
                                       "quality_rate": Decimal(25), "dispute_rate": Decimal(10),
                                       "price_adherence": Decimal(10)}
MAX_WEIGHT = Decimal(1000)
MAX_TREND_PERIODS = 24
DEFAULT_TREND_PERIODS = 4
WEIGHTS_VARIABLE = "CRM_PARTNERS_SCORECARD_WEIGHTS"
QUARTER, MONTH, YEAR = "quarter", "month", "year"
_PERIOD = re.compile(r"(?P<year>[0-9]{4})(?:-Q(?P<quarter>[1-4])|-(?P<month>0[1-9]|1[0-2]))?")
_MONTHS_PER = {QUARTER: 3, MONTH: 1, YEAR: 12}


# -- periods ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class Period:
    """A calendar quarter, month or year; `index` counts them from year 0 so that neighbours differ by one."""

    kind: str
    index: int

    @property
    def _first_month(self) -> int:  # months since year 0
        return self.index * _MONTHS_PER[self.kind]

    @property
    def start(self) -> date:
        """The first day."""
        return date(self._first_month // 12, self._first_month % 12 + 1, 1)

    @property
    def end(self) -> date:
        """The last day."""
        after = self._first_month + _MONTHS_PER[self.kind]
        return date(after // 12, after % 12 + 1, 1) - timedelta(days=1) if after // 12 <= 9999 else date(9999, 12, 31)

    @property
    def label(self) -> str:
        """`2026-Q3`, `2026-09` or `2026`."""
        year = self._first_month // 12
        if self.kind == QUARTER:
            return f"{year:04d}-Q{self._first_month % 12 // 3 + 1}"
        if self.kind == MONTH:
            return f"{year:04d}-{self._first_month % 12 + 1:02d}"
        return f"{year:04d}"

    def shifted(self, periods: int) -> Period:
        """The period `periods` later (earlier when negative); ValueError outside years 1-9999."""
        moved = Period(self.kind, self.index + periods)
        if not 1 <= moved._first_month // 12 <= 9999:
            raise ValueError("outside the years 1-9999")
        return moved

    def as_input(self) -> ScorecardPeriod:
        """What a plugin sees of the period."""
        return ScorecardPeriod(label=self.label, start=self.start, end=self.end)


def parse_period(text: str) -> Period:
    """`2026-Q3` (a quarter), `2026-09` (a month) or `2026` (a year); ValueError for anything else."""
    match = _PERIOD.fullmatch(text.strip())
    if not match or int(match["year"]) < 1:
        raise ValueError(f"not a period: {text!r}")
    year = int(match["year"])
    if match["quarter"]:
        return Period(QUARTER, year * 4 + int(match["quarter"]) - 1)
    if match["month"]:
        return Period(MONTH, year * 12 + int(match["month"]) - 1)
    return Period(YEAR, year)


def current_quarter(today: date) -> Period:
    """The quarter `today` lies in."""
    return Period(QUARTER, today.year * 4 + (today.month - 1) // 3)


def trend_periods(*, last: Period | None = None, count: int | None = None, first: Period | None = None,
                  today: date) -> list[Period]:
    """The periods of a trend, oldest first: `count` periods up to `last`, or `first` to `last` (same kind).

    `last` defaults to the current period of `first`'s kind, else the current quarter. 422 naming the
    argument when the periods are of different kinds, the wrong way round, too many or out of range.
    """
    if first is not None and count is not None:
        raise Unprocessable("Ask for a number of periods or for a range, not both.",
                            errors={"periods": ["Leave out `periods` when giving `from`."]})
    if last is None:
        last = current_quarter(today) if first is None else _current(first.kind, today)
    if first is None:
        count = DEFAULT_TREND_PERIODS if count is None else count
        try:
            first = last.shifted(1 - count)
        except ValueError:
            raise Unprocessable("The trend would start before the year 1.",
                                errors={"periods": ["Too many periods before this one."]}) from None
    if first.kind != last.kind:
        raise Unprocessable("`from` and `to` must be periods of one kind.",
                            errors={"from": [f"A {first.kind}, while `to` is a {last.kind}."]})
    if first > last:
        raise Unprocessable("The range ends before it starts.", errors={"from": ["Must not be after `to`."]})
    if last.index - first.index + 1 > MAX_TREND_PERIODS:
        raise Unprocessable(f"A trend shows at most {MAX_TREND_PERIODS} periods.",
                            errors={"from": [f"At most {MAX_TREND_PERIODS} periods up to `to`."]})
    return [Period(first.kind, index) for index in range(first.index, last.index + 1)]


def _current(kind: str, today: date) -> Period:
    if kind == MONTH:
        return Period(MONTH, today.year * 12 + today.month - 1)
    return Period(YEAR, today.year) if kind == YEAR else current_quarter(today)


# -- weights ----------------------------------------------------------------------------------------------

@lru_cache(maxsize=8)
def parse_weights(raw: str) -> Mapping[str, Decimal]:
    """The measures' weights: the defaults, with the ones a JSON object names replaced; SettingsError if malformed."""
    raw = (raw or "").strip()
    if not raw:
        return dict(DEFAULT_WEIGHTS)
    try:
        given = json.loads(raw, parse_float=Decimal, parse_int=Decimal)
    except ValueError:
        raise SettingsError(WEIGHTS_VARIABLE, "not a JSON object") from None
    if not isinstance(given, dict):
        raise SettingsError(WEIGHTS_VARIABLE, "not a JSON object")
    unknown = sorted(set(given) - set(MEASURES))
    if unknown:
        raise SettingsError(WEIGHTS_VARIABLE, f"unknown measure {unknown[0]!r}; known: {', '.join(MEASURES)}")
    weights = dict(DEFAULT_WEIGHTS)
    for name, value in given.items():
        if not isinstance(value, Decimal) or not value.is_finite() or not 0 <= value <= MAX_WEIGHT:
            raise SettingsError(WEIGHTS_VARIABLE, f"{name} must be a number from 0 to {MAX_WEIGHT}")
        weights[name] = value
    if not any(weights.values()):
        raise SettingsError(WEIGHTS_VARIABLE, "at least one weight must be above 0")
    return weights


def weights_from_settings(settings) -> Mapping[str, Decimal]:
    """The weights CRM_PARTNERS_SCORECARD_WEIGHTS gives (called at start-up, so a bad value stops the process)."""
    return parse_weights(settings.partners_scorecard_weights or "")


# -- arithmetic (pure) ------------------------------------------------------------------------------------

def rate(part, whole) -> Decimal | None:
    """`part / whole` rounded half up to four places; None when `whole` is 0."""
    if not whole:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(RATE_PLACES, ROUND_HALF_UP)


def metrics_from(counts: Mapping) -> ScorecardMetrics:
    """The rates of one period from its counts and sums (`deliveries`, `delivered`, `on_time`, `disputes`,
    `priced`, `within_price`, `quantity_ordered`, `quantity_delivered`, `quantity_rejected`)."""
    delivered_quantity = counts["quantity_delivered"]
    quality = rate(delivered_quantity - counts["quantity_rejected"], delivered_quantity)
    return ScorecardMetrics(
        **counts,
        on_time_rate=rate(counts["on_time"], counts["delivered"]),
        fill_rate=rate(delivered_quantity, counts["quantity_ordered"]),
        quality_rate=quality,
        dispute_rate=rate(counts["disputes"], counts["deliveries"]),
        price_adherence=rate(counts["within_price"], counts["priced"]),
    )


def measure_score(name: str, value: Decimal) -> Decimal:
    """How a measure counts in the overall score: the rate itself, or for the dispute rate `1 - rate` (>= 0)."""
    return max(Decimal(0), 1 - value) if name == "dispute_rate" else value


def overall_score(metrics: ScorecardMetrics, weights: Mapping[str, Decimal],
                  criteria: Sequence = ()) -> Decimal | None:
    """The weighted average of the measures that have a value and the plugins' criteria; None when no weight
    counts (no deliveries and no criteria)."""
    parts = [(weights[name], measure_score(name, getattr(metrics, name))) for name in MEASURES
             if getattr(metrics, name) is not None and weights[name] > 0]
    parts += [(Decimal(c.weight), Decimal(c.score)) for c in criteria if c.weight > 0]
    total = sum((weight for weight, _ in parts), Decimal(0))
    if not total:
        return None
    return (sum((weight * score for weight, score in parts), Decimal(0)) / total).quantize(RATE_PLACES,
                                                                                           ROUND_HALF_UP)


# -- the query --------------------------------------------------------------------------------------------

_ZERO_COUNTS = {"deliveries": 0, "delivered": 0, "on_time": 0, "disputes": 0, "priced": 0, "within_price": 0,
                "quantity_ordered": Decimal("0.000"), "quantity_delivered": Decimal("0.000"),
                "quantity_rejected": Decimal("0.000")}
_QUANTITY = Decimal("0.001")
_COLUMNS = ("deliveries", "delivered", "on_time", "disputes", "priced", "within_price", "quantity_ordered",
            "quantity_delivered", "quantity_rejected")


def _instant(day: date) -> datetime:
    return datetime.combine(day, time.min, timezone.utc)


def _bucket(column, spans: Sequence, bound) -> object:
    """The index of the span (a Period or a DayRange) `column` falls in (`bound` makes a day comparable to it)."""
    return case(*[(and_(column >= bound(p.start), column < bound(p.end + timedelta(days=1))), i)
                  for i, p in enumerate(spans)], else_=None)


def _counts_statement(partner_ids: Sequence[uuid.UUID], spans: Sequence):
    """One statement for every partner and span: per partner and span index, the deliveries' counts and sums and
    the disputes. The spans are consecutive (a trend's periods) or just one."""
    first, after = spans[0].start, spans[-1].end + timedelta(days=1)
    d = (select(Delivery.partner_id, _bucket(Delivery.promised_on, spans, lambda day: day).label("bucket"),
                Delivery.promised_on, Delivery.delivered_on, Delivery.amount, Delivery.agreed_amount,
                Delivery.quantity_ordered, Delivery.quantity_delivered, Delivery.quantity_rejected)
         .where(Delivery.partner_id.in_(partner_ids), Delivery.promised_on >= first, Delivery.promised_on < after)
         .subquery())
    deliveries = (select(
        d.c.partner_id, d.c.bucket, func.count().label("deliveries"), func.count(d.c.delivered_on).label("delivered"),
        func.sum(case((d.c.delivered_on <= d.c.promised_on, 1), else_=0)).label("on_time"),
        literal(0).label("disputes"),
        func.count(d.c.agreed_amount).label("priced"),
        func.sum(case((d.c.amount <= d.c.agreed_amount, 1), else_=0)).label("within_price"),
        func.sum(d.c.quantity_ordered).label("quantity_ordered"),
        func.sum(d.c.quantity_delivered).label("quantity_delivered"),
        func.sum(d.c.quantity_rejected).label("quantity_rejected"),
    ).group_by(d.c.partner_id, d.c.bucket))
    q = (select(Dispute.partner_id, _bucket(Dispute.opened_at, spans, _instant).label("bucket"))
         .where(Dispute.partner_id.in_(partner_ids), Dispute.opened_at >= _instant(first),
                Dispute.opened_at < _instant(after))
         .subquery())
    # The same columns in the same order; a dispute row carries only its count.
    disputes = (select(q.c.partner_id, q.c.bucket,
                       *[func.count().label(name) if name == "disputes" else literal(0).label(name)
                         for name in _COLUMNS])
                .group_by(q.c.partner_id, q.c.bucket))
    return union_all(deliveries, disputes)


def _counts_by_partner(session, partner_ids: Sequence[uuid.UUID], spans: Sequence) -> dict[uuid.UUID, list[dict]]:
    """The counts and sums of each span, in the order given, for every partner asked (zeros when it has none)."""
    counts = {partner_id: [dict(_ZERO_COUNTS) for _ in spans] for partner_id in partner_ids}
    if not counts:
        return counts
    for row in session.execute(_counts_statement(list(counts), spans)).mappings():
        if row["bucket"] is None:
            continue
        into = counts[row["partner_id"]][row["bucket"]]
        for name in _ZERO_COUNTS:
            value = row[name]
            if isinstance(into[name], Decimal):
                # SQLite sums NUMERIC as a float; through str() it comes back as the decimal it was.
                into[name] = (into[name] + Decimal(str(value or 0))).quantize(_QUANTITY)
            else:
                into[name] += int(value or 0)
    return counts


def _counts(session, partner_id: uuid.UUID, periods: Sequence[Period]) -> list[dict]:
    """The counts and sums of each period, in the order given."""
    return _counts_by_partner(session, [partner_id], periods)[partner_id]


@dataclass(frozen=True)
class DayRange:
    """The days from `start` to `end`, both included: a span measured like a period, but of any length."""

    start: date
    end: date


def range_metrics(session, partner_ids: Sequence[uuid.UUID], start: date, end: date) -> dict[uuid.UUID,
                                                                                             ScorecardMetrics]:
    """Every partner's measures over the deliveries promised from `start` to `end` (both included) and the
    disputes opened on those days (UTC), in one query for all of them, computed exactly as a period's are.

    A partner asked for with nothing in the range gets zero counts and null rates.
    """
    if end < start:
        raise ValueError(f"the range ends ({end}) before it starts ({start})")
    counts = _counts_by_partner(session, partner_ids, [DayRange(start, end)])
    return {partner_id: metrics_from(figures) for partner_id, (figures,) in counts.items()}


# -- use cases --------------------------------------------------------------------------------------------

def _partner(session, partner_id: uuid.UUID) -> Partner:
    partner = session.scalar(select(Partner).where(Partner.id == partner_id))
    if partner is None:
        raise NotFound(f"No partner with id {partner_id}.")
    return partner


def _partner_input(partner: Partner) -> PartnerInput:
    return PartnerInput(id=str(partner.id), name=partner.name, type=partner.type, status=partner.status,
                        country=partner.country)


def _card(partner: Partner, period: Period, counts: dict, *, plugins, weights) -> dict:
    metrics = metrics_from(counts)
    decision = (plugins.score_partner(_partner_input(partner), period.as_input(), metrics) if plugins is not None
                else PartnerScoreDecision())
    return {
        "partner_id": partner.id, "period": period.label, "start": period.start, "end": period.end,
        "counts": counts,
        "rates": {name: getattr(metrics, name) for name in MEASURES},
        "overall": overall_score(metrics, weights, decision.criteria),
        "weights": dict(weights),
        "criteria": decision.criteria,
        "degraded": decision.degraded,
    }


def _cards(session, partner_id: uuid.UUID, periods: Sequence[Period], *, plugins, weights) -> list[dict]:
    partner = _partner(session, partner_id)
    counts = _counts(session, partner.id, periods)
    return [_card(partner, period, figures, plugins=plugins, weights=weights)
            for period, figures in zip(periods, counts, strict=True)]


def scorecard(uow: UnitOfWork, partner_id: uuid.UUID, period: Period, *, plugins, weights) -> dict:
    """A partner's scorecard for one period (two queries: the partner, then every figure); 404 for no partner."""
    with uow:
        return _cards(uow.session, partner_id, [period], plugins=plugins, weights=weights)[0]


def trend(uow: UnitOfWork, partner_id: uuid.UUID, periods: Sequence[Period], *, plugins, weights) -> dict:
    """A partner's scorecards for consecutive periods, oldest first, from one query of the figures."""
    with uow:
        cards = _cards(uow.session, partner_id, periods, plugins=plugins, weights=weights)
        return {"partner_id": partner_id, "items": cards}


def _owner(partner_id) -> uuid.UUID:
    # The portal must never fall back to "any partner": a missing or malformed id finds nothing.
    if not isinstance(partner_id, uuid.UUID):
        raise NotFound("No partner is bound to this key.")
    return partner_id


def own_scorecard(uow: UnitOfWork, partner_id, period: Period, *, plugins, weights) -> dict:
    """The calling partner's own scorecard for one period."""
    return scorecard(uow, _owner(partner_id), period, plugins=plugins, weights=weights)


def own_trend(uow: UnitOfWork, partner_id, periods: Sequence[Period], *, plugins, weights) -> dict:
    """The calling partner's own scorecards for consecutive periods, oldest first."""
    return trend(uow, _owner(partner_id), periods, plugins=plugins, weights=weights)
