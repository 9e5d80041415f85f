"""Partner risk: the history snapshot that `crm_assess_partner_risk` plugins judge, and the assessment.

Plugins receive plain frozen values, never ORM objects or a session (docs/plugins.md), so the service reads
what a rule may need up front, in a fixed handful of grouped queries (the partner, deliveries by month, spend
by currency, unresolved disputes by category, contracts with their terms and open proposal) however many rows
or plugins there are. The plugins are called after the read transaction has ended, so a slow one holds no
connection. Nothing is stored: the assessment is made on request, so a changed plugin or parameter counts at
the next request.

`as_of` anchors the windows (the last HISTORY_MONTHS calendar months of deliveries, SPEND_MONTHS of spend);
disputes, contracts and proposals are taken as they stand.
"""
from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

from crm_plugins import (
    ContractSnapshot,
    DeliveryPeriod,
    OpenDisputes,
    PartnerHistory,
    PartnerInput,
    SpendShare,
)
from sqlalchemy import and_, case, func, select

from services.common.db import utcnow
from services.common.uow import UnitOfWork

from .models import Contract, ContractTerms, Delivery, Dispute, Partner, Proposal
from .service import _partner

HISTORY_MONTHS = 6
SPEND_MONTHS = 12
UNRESOLVED_DISPUTES = ("open", "investigating", "escalated")


def partner_input(partner: Partner) -> PartnerInput:
    """The plain, frozen view of a partner that plugins receive."""
    return PartnerInput(id=str(partner.id), name=partner.name, type=partner.type, status=partner.status,
                        country=partner.country)


def _months_back(day: date, months: int) -> date:
    """The first day of the month `months` before `day`'s month."""
    index = day.year * 12 + day.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def _month_ends(first_days: list[date], as_of: date) -> list[date]:
    return [nxt - timedelta(days=1) for nxt in first_days[1:]] + [as_of]


def _decimal(value) -> Decimal:
    return Decimal(0) if value is None else Decimal(str(value))


def delivery_periods(session, partner_id: uuid.UUID, as_of: date) -> tuple[DeliveryPeriod, ...]:
    """The deliveries promised in each of the last HISTORY_MONTHS months up to `as_of`, in one grouped query."""
    starts = [_months_back(as_of, n) for n in range(HISTORY_MONTHS - 1, -1, -1)]  # oldest first
    # The month a delivery was promised in, as an index into `starts` (the latest start it is not before).
    month = case(*[(Delivery.promised_on >= start, index) for index, start in reversed(list(enumerate(starts)))],
                 else_=-1).label("month")
    arrived_in_time = and_(Delivery.delivered_on.is_not(None), Delivery.delivered_on <= Delivery.promised_on)
    rows = select(month, case((arrived_in_time, 1), else_=0).label("on_time"), Delivery.quantity_ordered,
                  Delivery.quantity_delivered, Delivery.quantity_rejected).where(
        Delivery.partner_id == partner_id, Delivery.promised_on >= starts[0], Delivery.promised_on <= as_of,
    ).subquery()
    # Grouped outside: the CASE's date parameters would otherwise differ between SELECT and GROUP BY.
    totals = {row.month: row for row in session.execute(
        select(rows.c.month, func.count().label("deliveries"), func.sum(rows.c.on_time).label("on_time"),
               func.sum(rows.c.quantity_ordered).label("ordered"), func.sum(rows.c.quantity_delivered).label("delivered"),
               func.sum(rows.c.quantity_rejected).label("rejected")).group_by(rows.c.month))}
    periods = []
    for index, (first, last) in enumerate(zip(starts, _month_ends(starts, as_of))):
        row = totals.get(index)
        periods.append(DeliveryPeriod(first_day=first, last_day=last) if row is None else DeliveryPeriod(
            first_day=first, last_day=last, deliveries=row.deliveries, on_time=int(row.on_time or 0),
            quantity_ordered=_decimal(row.ordered), quantity_delivered=_decimal(row.delivered),
            quantity_rejected=_decimal(row.rejected)))
    return tuple(periods)


def spend_shares(session, partner_id: uuid.UUID, as_of: date) -> tuple[SpendShare, ...]:
    """Per currency the partner delivered in, its amount and every partner's over the last SPEND_MONTHS."""
    since = _a_year_before(as_of)
    partner_amount = func.sum(case((Delivery.partner_id == partner_id, Delivery.amount), else_=0))
    rows = session.execute(
        select(Delivery.currency, partner_amount.label("partner_amount"), func.sum(Delivery.amount).label("total"))
        .where(Delivery.delivered_on.is_not(None), Delivery.delivered_on > since, Delivery.delivered_on <= as_of)
        .group_by(Delivery.currency).order_by(Delivery.currency))
    return tuple(SpendShare(currency=row.currency, partner_amount=_decimal(row.partner_amount),
                            total_amount=_decimal(row.total)) for row in rows if _decimal(row.partner_amount) > 0)


def _a_year_before(day: date) -> date:
    """The same day SPEND_MONTHS earlier (28 February for a 29th of February)."""
    years = SPEND_MONTHS // 12
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def open_disputes(session, partner_id: uuid.UUID) -> tuple[OpenDisputes, ...]:
    """The partner's unresolved disputes, counted and summed by category and currency."""
    escalated = func.sum(case((Dispute.status == "escalated", 1), else_=0))
    rows = session.execute(
        select(Dispute.category, Dispute.currency, func.count().label("count"), func.sum(Dispute.amount).label("amount"),
               escalated.label("escalated"), func.min(Dispute.opened_at).label("oldest"))
        .where(Dispute.partner_id == partner_id, Dispute.status.in_(UNRESOLVED_DISPUTES))
        .group_by(Dispute.category, Dispute.currency).order_by(Dispute.category, Dispute.currency))
    return tuple(OpenDisputes(category=row.category, currency=row.currency, count=row.count,
                              amount=_decimal(row.amount), escalated=int(row.escalated or 0),
                              oldest_opened_at=row.oldest) for row in rows)


def _proposed_date(changes: dict | None) -> date | None:
    value = (changes or {}).get("effective_to")
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _proposed_flag(changes: dict | None) -> bool | None:
    value = (changes or {}).get("auto_renew")
    return value if isinstance(value, bool) else None


def contract_snapshots(session, partner_id: uuid.UUID) -> tuple[ContractSnapshot, ...]:
    """Every contract of the partner with the terms in force and its open proposal's changes, in one query."""
    rows = session.execute(
        select(Contract.id, Contract.title, ContractTerms, Proposal.changes)
        .join(ContractTerms, and_(ContractTerms.contract_id == Contract.id,
                                  ContractTerms.version == Contract.current_version))
        .outerjoin(Proposal, and_(Proposal.contract_id == Contract.id, Proposal.status == "open"))
        .where(Contract.partner_id == partner_id).order_by(Contract.seq))
    return tuple(ContractSnapshot(
        id=str(row.id), title=row.title, version=row.ContractTerms.version,
        effective_from=row.ContractTerms.effective_from, effective_to=row.ContractTerms.effective_to,
        auto_renew=row.ContractTerms.auto_renew, notice_period_days=row.ContractTerms.notice_period_days,
        proposed_effective_to=_proposed_date(row.changes), proposed_auto_renew=_proposed_flag(row.changes),
    ) for row in rows)


def build_history(session, partner_id: uuid.UUID, as_of: date) -> PartnerHistory:
    """The partner's snapshot as of `as_of`: four queries, one per table group."""
    return PartnerHistory(as_of=as_of, periods=delivery_periods(session, partner_id, as_of),
                          open_disputes=open_disputes(session, partner_id),
                          spend=spend_shares(session, partner_id, as_of),
                          contracts=contract_snapshots(session, partner_id))


def assess_partner_risk(uow: UnitOfWork, partner_id: uuid.UUID, *, plugins, as_of: date | None = None) -> dict:
    """The partner's risk as of `as_of` (default today, UTC): score, level, every factor and any failed plugin."""
    with uow:
        partner = _partner(uow.session, partner_id)
        history = build_history(uow.session, partner.id, as_of or utcnow().date())
        subject = partner_input(partner)
    assessment = plugins.assess_partner_risk(subject, history)
    return {"partner_id": partner_id, "as_of": history.as_of, **assessment.to_dict()}
