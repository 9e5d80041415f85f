"""The contacts side of termination policies: which customers are judged, the history each is judged on, and
terminating one when an operator accepts a `terminate` recommendation.

These are the functions of the customers' `SubjectAdapter` (services/common/termination). A history is built
for a batch of contacts at once, with one grouped query per source whatever the batch's size: the contacts,
their complaints, purchases (per currency), returns of those purchases, invoice payments and active fraud flags;
each contact's row of the current analytics snapshot comes with the contacts, through the record's own join
(analytics.contact_measures). Never one query per contact.

The window: complaints and purchases that occurred from `since = as_of - window_days` to `as_of` (both
included); invoices due from `since`'s UTC day to `as_of`'s. Money is summed in BIGINT units of 1/10,000
(dialects.money_units_sum), exact on PostgreSQL and SQLite, and handed over as Decimal.
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from crm_plugins.types import (
    CustomerAnalytics as AnalyticsRow,
    CustomerHistory,
    CustomerSpend,
    FraudFlag,
    PaymentSummary,
    TerminationSubject,
)
from sqlalchemy import Date, and_, func, literal, or_, select
from sqlalchemy.orm import Session

from services.common.db import utcnow
from services.common.settings import Settings
from services.common.uow import UnitOfWork

from . import timeline
from .analytics.contact_measures import RECORD_COLUMNS, contact_measures_view, with_contact_measures
from .analytics.snapshots import money
from .dialects import money_units_sum
from .interactions import COMPLAINT, OPEN
from .models import (
    Contact,
    ContactFraudFlag,
    ContactPayment,
    ContactPurchase,
    ContactReturn,
    Interaction,
)
from .payments import lateness
from .tombstones import missing_contact

ACTIVE, TERMINATED = "active", "terminated"
CONTACT_TERMINATED = "contact_terminated"
CONTACT_ALREADY_TERMINATED = "contact_already_terminated"


# -- the adapter's functions ------------------------------------------------------------------------------------

def eligible_customers(session: Session, after_seq: int | None, limit: int) -> list[tuple[int, uuid.UUID]]:
    """Up to `limit` active contacts after `after_seq`, as (seq, id) in seq order."""
    stmt = select(Contact.seq, Contact.id).where(Contact.status == ACTIVE)
    if after_seq is not None:
        stmt = stmt.where(Contact.seq > after_seq)
    return [(seq, contact_id) for seq, contact_id in session.execute(stmt.order_by(Contact.seq).limit(limit))]


def customer_histories(session: Session, ids: Sequence[uuid.UUID], as_of: datetime, window_days: int, *,
                       currency: str = Settings.base_currency,
                       ) -> dict[uuid.UUID, tuple[TerminationSubject, CustomerHistory]]:
    """The subject and history of each contact of `ids` that exists, over the `window_days` days before `as_of`.

    `currency` is the analytics snapshot's (the contacts adapter passes CRM_BASE_CURRENCY). Six queries
    however many contacts are asked for; an unknown id is left out of the answer.
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    ids = list(dict.fromkeys(ids))
    if not ids:
        return {}
    since = as_of - timedelta(days=window_days)
    subjects = _subjects(session, ids, currency)
    if not subjects:
        return {}
    found = list(subjects)
    complaints = _complaints(session, found, since, as_of)
    spend = _spend(session, found, since, as_of)
    payments = _payments(session, found, since.date(), as_of.date())
    flags = _flags(session, found, as_of)
    histories = {}
    for contact_id, (subject, analytics) in subjects.items():
        by_currency = spend.get(contact_id, ())
        complained, still_open = complaints.get(contact_id, (0, 0))
        histories[contact_id] = (subject, CustomerHistory(
            as_of=as_of, since=since, complaints=complained, open_complaints=still_open,
            purchases=sum(s.purchases for s in by_currency), spend=by_currency,
            payments=payments.get(contact_id, PaymentSummary()), fraud_flags=flags.get(contact_id, ()),
            analytics=analytics))
    return histories


def terminate_contact(uow: UnitOfWork, contact_id: uuid.UUID, *, recommendation_id: uuid.UUID,
                      decision_id: uuid.UUID, reason: str) -> str:
    """Mark the contact `terminated`, record crm.contact.terminated and a `terminated` timeline entry (keyed by
    the decision), in the caller's unit of work.

    Already terminated: nothing changes and no second event is recorded (`contact_already_terminated`).
    404 (or 410 for a merged or erased id) when there is no such contact.
    """
    with uow:
        session = uow.session
        contact = session.scalar(select(Contact).where(Contact.id == contact_id).with_for_update()
                                 .execution_options(populate_existing=True))
        if contact is None:
            raise missing_contact(session, contact_id)
        if contact.status == TERMINATED:
            return CONTACT_ALREADY_TERMINATED
        now = utcnow()
        contact.status, contact.terminated_at, contact.updated_at = TERMINATED, now, now
        contact.version += 1
        timeline.add_entries(session, [timeline.entry(
            id=decision_id, kind="terminated", occurred_at=now, source=timeline.CONTACTS, contact_id=contact_id,
            summary=f"Relationship ended by a termination decision: {reason}",
            data={"recommendation_id": str(recommendation_id), "decision_id": str(decision_id), "reason": reason})])
        uow.add_event("crm.contact.terminated", {
            "contact_id": contact_id, "recommendation_id": recommendation_id, "decision_id": decision_id,
            "reason": reason, "occurred_at": now}, subject=contact_id)
        uow.commit()
        return CONTACT_TERMINATED


# -- one query per source -----------------------------------------------------------------------------------------

def _name(first: str | None, last: str | None, email: str) -> str:
    full = " ".join(part for part in (first, last) if part)
    return full or email


def _subjects(session: Session, ids: list[uuid.UUID],
              currency: str) -> dict[uuid.UUID, tuple[TerminationSubject, AnalyticsRow | None]]:
    """Per contact: the subject, and its row of `currency`'s current analytics snapshot (None when the snapshot
    does not hold it) with the lifetime margin and cost to serve the record shows as historical_margin and
    cost_to_serve."""
    c = Contact
    stmt = (select(c.id, c.first_name, c.last_name, c.email, c.status, *RECORD_COLUMNS)
            .select_from(with_contact_measures(c.__table__, c.id, currency))
            .where(c.id.in_(ids)).order_by(c.seq))
    found = {}
    for row in session.execute(stmt):
        subject = TerminationSubject(kind="customer", id=str(row.id),
                                     name=_name(row.first_name, row.last_name, row.email), status=row.status)
        block = contact_measures_view(row._mapping)
        analytics = None if block is None else AnalyticsRow(
            as_of=block["as_of"], currency=block["currency"], quadrant=block["quadrant"],
            margin=block["historical_margin"], cost_to_serve=block["cost_to_serve"], clv=block["clv"])
        found[row.id] = (subject, analytics)
    return found


def _complaints(session: Session, ids: list[uuid.UUID], since: datetime,
                as_of: datetime) -> dict[uuid.UUID, tuple[int, int]]:
    """Per contact: the complaints that occurred in the window, and how many of them are still open."""
    i = Interaction
    stmt = (select(i.contact_id, func.count().label("complaints"),
                   func.count().filter(i.status == OPEN).label("still_open"))
            .where(i.contact_id.in_(ids), i.type == COMPLAINT, i.occurred_at >= since, i.occurred_at <= as_of)
            .group_by(i.contact_id))
    return {row.contact_id: (row.complaints, row.still_open) for row in session.execute(stmt)}


def _spend(session: Session, ids: list[uuid.UUID], since: datetime,
           as_of: datetime) -> dict[uuid.UUID, tuple[CustomerSpend, ...]]:
    """Per contact, one CustomerSpend per currency: the purchases in the window and the returns of them."""
    p, r = ContactPurchase, ContactReturn
    in_window = and_(p.contact_id.in_(ids), p.occurred_at >= since, p.occurred_at <= as_of)
    # Money binds as a Decimal string on SQLite: a decimal string compared with '0.0000', right for amounts >= 0.
    discounted = or_(p.discount > 0, p.coupon_code.is_not(None))
    purchases = (select(p.contact_id, p.currency, func.count().label("purchases"),
                        money_units_sum(p.amount).label("revenue"),
                        func.count().filter(discounted).label("discounted_purchases"),
                        money_units_sum(p.amount, discounted).label("discounted_revenue"),
                        money_units_sum(p.discount).label("discount_total"),
                        func.count().filter(p.coupon_code.is_not(None)).label("coupon_purchases"))
                 .where(in_window).group_by(p.contact_id, p.currency))
    returns = (select(p.contact_id, r.currency, func.count().label("returns"),
                      money_units_sum(r.amount).label("returned"))
               .join(p, p.purchase_id == r.purchase_id)
               .where(in_window, r.occurred_at <= as_of).group_by(p.contact_id, r.currency))
    found: dict[uuid.UUID, dict[str, dict]] = {}
    for row in session.execute(purchases):
        found.setdefault(row.contact_id, {})[row.currency] = {
            "purchases": row.purchases, "revenue": _amount(row.revenue),
            "discounted_purchases": row.discounted_purchases, "discounted_revenue": _amount(row.discounted_revenue),
            "discount_total": _amount(row.discount_total), "coupon_purchases": row.coupon_purchases}
    for row in session.execute(returns):
        found.setdefault(row.contact_id, {}).setdefault(row.currency, {}).update(
            returns=row.returns, returned_amount=_amount(row.returned))
    return {contact_id: tuple(CustomerSpend(currency=currency, **values)
                              for currency, values in sorted(by_currency.items()))
            for contact_id, by_currency in found.items()}


def _amount(units: int | None):
    return money(units or 0)


def _payments(session: Session, ids: list[uuid.UUID], since: date, until: date) -> dict[uuid.UUID, PaymentSummary]:
    """Per contact: the invoices due from `since` to `until` (both included), as `until` sees them (the lateness
    rule of payments.py; a payment dated after `until` was not yet made then)."""
    p = ContactPayment
    rule = lateness(until, paid_by=until)
    stmt = (select(p.contact_id, func.count().label("due"), func.count().filter(rule.paid).label("paid"),
                   func.count().filter(rule.late).label("late"),
                   func.count().filter(rule.overdue).label("unpaid_overdue"),
                   func.coalesce(func.sum(rule.days_late), 0).label("days_late_total"),
                   func.coalesce(func.max(rule.days_late), 0).label("max_days_late"))
            .where(p.contact_id.in_(ids), p.due_on >= since, p.due_on <= literal(until, Date()))
            .group_by(p.contact_id))
    return {row.contact_id: PaymentSummary(due=row.due, paid=row.paid, late=row.late,
                                           unpaid_overdue=row.unpaid_overdue,
                                           days_late_total=int(row.days_late_total),
                                           max_days_late=int(row.max_days_late))
            for row in session.execute(stmt)}


def _flags(session: Session, ids: list[uuid.UUID], as_of: datetime) -> dict[uuid.UUID, tuple[FraudFlag, ...]]:
    """Per contact: the fraud flags raised by `as_of` and not cleared by then, oldest first."""
    f = ContactFraudFlag
    stmt = (select(f.contact_id, f.code, f.reason, f.flagged_at)
            .where(f.contact_id.in_(ids), f.flagged_at <= as_of, or_(f.cleared_at.is_(None), f.cleared_at > as_of))
            .order_by(f.contact_id, f.flagged_at, f.seq))
    found: dict[uuid.UUID, list[FraudFlag]] = {}
    for row in session.execute(stmt):
        found.setdefault(row.contact_id, []).append(FraudFlag(code=row.code, reason=row.reason,
                                                              flagged_at=row.flagged_at))
    return {contact_id: tuple(flags) for contact_id, flags in found.items()}
