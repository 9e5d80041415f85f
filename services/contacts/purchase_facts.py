"""The purchase fact table: every purchase and return loyalty reports, one row each, and the totals beside them.

`contact_purchases` keeps one row per purchase (amount, currency, margin, discount, coupon code, occurred_at) and
`contact_returns` one per return, keyed by loyalty's ids: a purchase or return published again, under any
event id, is stored and counted once. Beside them, per contact, `contact_purchase_summary` (how many purchases,
the first and the last) and, per contact and currency, `contact_purchase_metrics`: `total` is gross, every
purchase as before returns existed; `returned` is what returns gave back (net revenue = total - returned);
`margin` is net, the purchases' margins less the margins returns gave back; `discount` the purchases' discounts.
A return counts on its own row whichever event arrives first, so the totals are exact once both are in.

Batches (handlers.on_purchase_facts): on PostgreSQL one INSERT ... ON CONFLICT DO NOTHING RETURNING per fact
table, then one upsert for the summaries and one for the per-currency totals, adding only the new facts, rows in
key order so concurrent batches lock shared rows in one order. SQLite keeps amounts as text and would add them
as floats in SQL, so there they are added in Python (SQLite lets one transaction write at a time anyway).
Every change to a contact's totals writes its summary row first: a merge (merges.py) locks that row to fold them.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, insert, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from services.common.db import utcnow
from services.common.uow import UnitOfWork, insert_or_reread

from .models import MONEY_PLACES, ContactPurchase, ContactPurchaseMetric, ContactPurchaseSummary, ContactReturn
from .tombstones import survivors

_PURCHASES = ContactPurchase.__table__
_RETURNS = ContactReturn.__table__
_SUMMARY = ContactPurchaseSummary.__table__
_METRICS = ContactPurchaseMetric.__table__
TOTALS = ("total", "count", "returned", "margin", "discount")  # the added-up columns of contact_purchase_metrics
ZERO = Decimal(0)

# -- pure rules -------------------------------------------------------------------------------------------


def exact_amount(value) -> Decimal:
    """An amount as the exact Decimal the facts store; ValueError when it cannot be kept exactly.

    The tables hold four decimal places. Rounding a finer amount would make the totals disagree with the
    facts, so such an event fails (and ends in the dead-letter queue) instead of being counted wrongly.
    """
    amount = Decimal(value) if not isinstance(value, Decimal) else value
    if not amount.is_finite():
        raise ValueError(f"amount {value!r} is not a finite number")
    if amount.as_tuple().exponent < -MONEY_PLACES:
        raise ValueError(f"amount {value!r} has more than {MONEY_PLACES} decimal places")
    return amount


def _exact_or_none(value) -> Decimal | None:
    return None if value is None else exact_amount(value)


def widen_span(first: datetime | None, last: datetime | None, occurred_at: datetime) -> tuple[datetime, datetime]:
    """The (first, last) purchase times once a purchase at `occurred_at` is counted, whatever the arrival order."""
    return (occurred_at if first is None else min(first, occurred_at),
            occurred_at if last is None else max(last, occurred_at))


@dataclass
class Spend:
    """One currency's totals: of a contact, of a batch's new facts, or of several contacts added up."""

    currency: str
    total: Decimal = ZERO
    count: int = 0
    returned: Decimal = ZERO
    margin: Decimal = ZERO
    discount: Decimal = ZERO

    @classmethod
    def of(cls, row) -> Spend:
        """The totals of a `contact_purchase_metrics` row (or anything with its attribute names; None is 0)."""
        values = {name: getattr(row, name) for name in TOTALS}
        return cls(row.currency, **{name: value for name, value in values.items() if value is not None})

    def add(self, other: Spend) -> None:
        """Add `other`'s totals to these."""
        for name in TOTALS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def view(self) -> dict:
        """One line of `total_spend`: gross `amount`, `returned`, `net` = amount - returned, net `margin`."""
        return {"currency": self.currency, "amount": self.total, "count": self.count, "returned": self.returned,
                "net": self.total - self.returned, "margin": self.margin, "discount": self.discount}


@dataclass
class Span:
    """One contact's purchase count and first and last purchase time (the summary row's figures)."""

    count: int = 0
    first: datetime | None = None
    last: datetime | None = None


@dataclass
class Changes:
    """What a batch's new facts add: per contact its span, per (contact, currency) its totals."""

    spans: dict[uuid.UUID, Span] = field(default_factory=dict)
    spend: dict[tuple[uuid.UUID, str], Spend] = field(default_factory=dict)


def changes_of(purchases: Iterable[Mapping], returns: Iterable[Mapping]) -> Changes:
    """Add up new purchase and return facts (rows as stored) by contact and by contact and currency."""
    changes = Changes()

    def line(fact) -> Spend:
        return changes.spend.setdefault((fact["contact_id"], fact["currency"]), Spend(fact["currency"]))

    for fact in purchases:
        span = changes.spans.setdefault(fact["contact_id"], Span())
        span.count += 1
        span.first, span.last = widen_span(span.first, span.last, fact["occurred_at"])
        spend = line(fact)
        spend.total += fact["amount"]
        spend.count += 1
        spend.margin += fact["margin"] or ZERO
        spend.discount += fact["discount"] or ZERO
    for fact in returns:
        changes.spans.setdefault(fact["contact_id"], Span())  # no figure changes, but the row is written first
        spend = line(fact)
        spend.returned += fact["amount"]
        spend.margin -= fact["margin"] or ZERO
    return changes


def purchases_view(summary: ContactPurchaseSummary | None, metrics: Iterable) -> dict:
    """The `purchases` block of a contact: zero and empty when nothing was bought."""
    return {
        "count": summary.purchase_count if summary else 0,
        "first_purchase_at": summary.first_purchase_at if summary else None,
        "last_purchase_at": summary.last_purchase_at if summary else None,
        "total_spend": [Spend.of(m).view() for m in sorted(metrics, key=lambda m: m.currency)],
    }


# -- the facts --------------------------------------------------------------------------------------------

def purchase_fact(purchase: Mapping, *, event_id: uuid.UUID | None) -> dict:
    """The `contact_purchases` row of a crm.purchase.recorded payload; ValueError for an inexact amount."""
    return {"purchase_id": purchase["purchase_id"], "contact_id": purchase["contact_id"],
            "amount": exact_amount(purchase["amount"]), "currency": purchase["currency"],
            "occurred_at": purchase["occurred_at"], "margin": _exact_or_none(purchase.get("margin")),
            "discount": _exact_or_none(purchase.get("discount")), "coupon_code": purchase.get("coupon_code"),
            "event_id": event_id, "recorded_at": utcnow()}


def return_fact(returned: Mapping, *, event_id: uuid.UUID | None) -> dict:
    """The `contact_returns` row of a crm.purchase.returned payload; ValueError for an inexact amount."""
    return {"return_id": returned["return_id"], "purchase_id": returned["purchase_id"],
            "contact_id": returned["contact_id"], "amount": exact_amount(returned["amount"]),
            "margin": _exact_or_none(returned.get("margin")), "currency": returned["currency"],
            "occurred_at": returned["occurred_at"], "event_id": event_id, "recorded_at": utcnow()}


def _on_survivors(session: Session, facts: list[dict]) -> list[dict]:
    """The facts, those naming a merged contact moved to the contact it lives on as (one query)."""
    moved = survivors(session, {fact["contact_id"] for fact in facts})
    return [{**fact, "contact_id": moved.get(fact["contact_id"], fact["contact_id"])} for fact in facts]


def _insert_new(session: Session, table, key: str, facts: list[dict]) -> list[dict]:
    """Insert the facts not stored yet (by `key`); returns those, in key order. One statement on PostgreSQL."""
    unique = sorted({fact[key]: fact for fact in reversed(facts)}.values(), key=lambda fact: str(fact[key]))
    if not unique:
        return []
    column = table.c[key]
    if session.get_bind().dialect.name == "postgresql":
        # A concurrent delivery of the same fact waits here for the first to commit, then is skipped.
        stmt = pg_insert(table).values(unique).on_conflict_do_nothing(index_elements=[key]).returning(column)
        stored = set(session.scalars(stmt))
    else:
        known = set(session.scalars(select(column).where(column.in_([fact[key] for fact in unique]))))
        stored = {fact[key] for fact in unique} - known
        if stored:
            session.execute(insert(table), [fact for fact in unique if fact[key] in stored])
    return [fact for fact in unique if fact[key] in stored]


Fact = tuple[Mapping, uuid.UUID | None]  # an event's payload and the event's id


def record_facts(uow: UnitOfWork, purchases: Sequence[Fact] = (), returns: Sequence[Fact] = ()) -> tuple[int, int]:
    """Store crm.purchase.recorded and crm.purchase.returned payloads and add the new ones to the totals.

    Returns how many purchases and returns were new: one stored before, or twice in these lists, counts once.
    The contact need not exist yet: the facts are kept by contact id and shown once it does.
    """
    with uow:
        session = uow.session
        bought = [purchase_fact(payload, event_id=event_id) for payload, event_id in purchases]
        given = [return_fact(payload, event_id=event_id) for payload, event_id in returns]
        facts = _on_survivors(session, bought + given)
        new_purchases = _insert_new(session, _PURCHASES, "purchase_id", facts[:len(bought)])
        new_returns = _insert_new(session, _RETURNS, "return_id", facts[len(bought):])
        add_to_totals(session, changes_of(new_purchases, new_returns))
        uow.commit()
        return len(new_purchases), len(new_returns)


def record_purchase(uow: UnitOfWork, purchase: Mapping, *, event_id: uuid.UUID | None = None) -> bool:
    """Store and count one purchase (record_facts of one); False when it was stored before."""
    return record_facts(uow, [(purchase, event_id)])[0] == 1


# -- the totals -------------------------------------------------------------------------------------------

def add_to_totals(session: Session, changes: Changes) -> None:
    """Add a batch's changes to the summaries, then to the per-currency totals (see the module's docstring)."""
    if not changes.spans:
        return
    if session.get_bind().dialect.name == "postgresql":
        _upsert_totals(session, changes)
    else:
        _add_in_python(session, changes)


def _upsert_totals(session: Session, changes: Changes) -> None:
    now = utcnow()
    spans = [{"contact_id": contact_id, "purchase_count": span.count, "first_purchase_at": span.first,
              "last_purchase_at": span.last, "updated_at": now}
             for contact_id, span in sorted(changes.spans.items(), key=lambda item: str(item[0]))]
    stmt = pg_insert(_SUMMARY).values(spans)
    session.execute(stmt.on_conflict_do_update(index_elements=["contact_id"], set_={
        "purchase_count": _SUMMARY.c.purchase_count + stmt.excluded.purchase_count,
        # LEAST and GREATEST skip NULLs: a summary a return created has no times until a purchase comes.
        "first_purchase_at": func.least(_SUMMARY.c.first_purchase_at, stmt.excluded.first_purchase_at),
        "last_purchase_at": func.greatest(_SUMMARY.c.last_purchase_at, stmt.excluded.last_purchase_at),
        "updated_at": stmt.excluded.updated_at}))
    lines = [{"contact_id": contact_id, **{name: getattr(spend, name) for name in ("currency", *TOTALS)}}
             for (contact_id, _currency), spend in sorted(changes.spend.items(), key=lambda item: str(item[0]))]
    stmt = pg_insert(_METRICS).values(lines)
    session.execute(stmt.on_conflict_do_update(
        index_elements=["contact_id", "currency"],
        set_={name: _METRICS.c[name] + stmt.excluded[name] for name in TOTALS}))


def _add_in_python(session: Session, changes: Changes) -> None:
    stmt = select(ContactPurchaseSummary).where(ContactPurchaseSummary.contact_id.in_(changes.spans))
    summaries = {row.contact_id: row for row in session.scalars(stmt.execution_options(populate_existing=True))}
    for contact_id, span in changes.spans.items():
        summary = summaries.get(contact_id)
        if summary is None:
            summary = ContactPurchaseSummary(contact_id=contact_id, purchase_count=0)
            session.add(summary)
        summary.purchase_count += span.count
        for at in (span.first, span.last):
            if at is not None:
                summary.first_purchase_at, summary.last_purchase_at = widen_span(
                    summary.first_purchase_at, summary.last_purchase_at, at)
    keys = list(changes.spend)
    stmt = select(ContactPurchaseMetric).where(tuple_(ContactPurchaseMetric.contact_id,
                                                      ContactPurchaseMetric.currency).in_(keys))
    metrics = {(row.contact_id, row.currency): row for row in session.scalars(stmt.execution_options(
        populate_existing=True))}
    for key, spend in changes.spend.items():
        metric = metrics.get(key)
        if metric is None:
            metric = ContactPurchaseMetric(contact_id=key[0], currency=key[1],
                                           **{name: type(getattr(spend, name))(0) for name in TOTALS})
            session.add(metric)
        for name in TOTALS:
            setattr(metric, name, getattr(metric, name) + getattr(spend, name))
    session.flush()


def locked_summary(session: Session, contact_id: uuid.UUID) -> ContactPurchaseSummary:
    """The contact's purchase summary row, created when missing, locked until the transaction ends."""
    stmt = (select(ContactPurchaseSummary).where(ContactPurchaseSummary.contact_id == contact_id)
            .with_for_update().execution_options(populate_existing=True))
    summary = session.scalar(stmt)
    if summary is not None:
        return summary
    summary = ContactPurchaseSummary(contact_id=contact_id, purchase_count=0)
    # When another worker created it first, the re-read waits for its lock.
    return insert_or_reread(session, summary, reread=lambda: session.scalar(stmt)) or summary
