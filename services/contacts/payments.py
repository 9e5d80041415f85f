"""A contact's invoice payments: when each invoice was due and when it was paid (termination evidence).

What the chronic-late-payer policy reads (termination_history.py). An invoice is recorded once per contact
(its reference is the key); its payment date may come with it or later (PATCH). `crm.payment.recorded` is
published when an invoice is recorded and whenever its payment date is set. Each invoice has one `payment`
entry on the contact's timeline (keyed by the payment's id), rewritten when its payment date changes.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import ColumnElement, Date, and_, case, literal, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.common.db import new_id, utcnow
from services.common.etags import NO_PRECONDITION, Precondition
from services.common.pagination import paginate
from services.common.problems import Conflict, Unprocessable
from services.common.uow import UnitOfWork

from . import timeline
from .dialects import days_between
from .models import Contact, ContactPayment
from .tombstones import contact_row, hold_contact, missing_contact

READ_SCOPE = "contacts:read"
# No invoice of a living customer is older; it also keeps year-1 dates out of day arithmetic.
EARLIEST = date(1900, 1, 1)
# A payment date is a calendar day where the payer is: up to a day ahead of this server's UTC date.
PAID_AHEAD = timedelta(days=1)
_FOUR_PLACES = Decimal("0.0001")
_CENTS = Decimal("0.01")
SORTS = {"due_on": ContactPayment.due_on, "created_at": ContactPayment.created_at}


def utc_today() -> date:
    """This server's UTC date: what "past its due date" is measured against."""
    return datetime.now(UTC).date()


# -- pure rules -------------------------------------------------------------------------------------------

def _refuse(errors: dict[str, list[str]]) -> Unprocessable:
    return Unprocessable(f"The payment has invalid fields: {', '.join(sorted(errors))}.", errors=errors)


def check_dates(due_on: date, paid_on: date | None, *, today: date) -> None:
    """Refuse (422 naming the field) a due date before 1900, or a payment date before 1900 or in the future.

    A payment before its due date is fine (paid early).
    """
    errors: dict[str, list[str]] = {}
    if due_on < EARLIEST:
        errors["due_on"] = ["Must not be before 1900."]
    if paid_on is not None and paid_on < EARLIEST:
        errors["paid_on"] = ["Must not be before 1900."]
    elif paid_on is not None and paid_on > today + PAID_AHEAD:
        errors["paid_on"] = ["Must not be in the future."]
    if errors:
        raise _refuse(errors)


def _counts_as_paid(paid_on: date | None, paid_by: date | None) -> bool:
    return paid_on is not None and (paid_by is None or paid_on <= paid_by)


def is_late(due_on: date, paid_on: date | None, *, today: date, paid_by: date | None = None) -> bool:
    """The lateness rule, in Python (lateness() below is the same rule in SQL, tested against it): paid after its
    due date, or not paid and past it on `today`. `paid_by` as in lateness()."""
    return paid_on > due_on if _counts_as_paid(paid_on, paid_by) else due_on < today


def days_late(due_on: date, paid_on: date | None, *, today: date, paid_by: date | None = None) -> int:
    """Days after its due date an invoice was paid, or has been unpaid by `today`; 0 when not late (lateness()'s
    `days_late`)."""
    end = paid_on if _counts_as_paid(paid_on, paid_by) else today
    return max((end - due_on).days, 0)


def view(payment: ContactPayment, *, today: date) -> dict:
    """A payment as the API shows it: its columns, and whether (and how many days) it is late on `today`."""
    values = {column.key: getattr(payment, column.key) for column in ContactPayment.__table__.columns}
    return {**values, "late": is_late(payment.due_on, payment.paid_on, today=today),
            "days_late": days_late(payment.due_on, payment.paid_on, today=today)}


def event_data(payment: ContactPayment) -> dict:
    """The `crm.payment.recorded` data of `payment` as it stands (the amount with four places, as stored)."""
    return {"payment_id": payment.id, "contact_id": payment.contact_id,
            "invoice_reference": payment.invoice_reference, "amount": payment.amount.quantize(_FOUR_PLACES),
            "currency": payment.currency,
            "due_on": payment.due_on, "paid_on": payment.paid_on, "occurred_at": payment.updated_at}


def _amount(amount: Decimal) -> str:
    """An amount for people: 120.5000 -> "120.50"; places beyond the cents only when they are not zeros."""
    cents = amount.quantize(_CENTS)
    return format(cents if cents == amount else amount.normalize(), "f")


def timeline_summary(payment: ContactPayment) -> str:
    """The timeline's line, e.g. "Invoice INV-1: 120.00 EUR due 2026-01-31, paid 2026-02-10 (10 days late)"."""
    invoice = f"Invoice {payment.invoice_reference}: {_amount(payment.amount)} {payment.currency} due {payment.due_on}"
    if payment.paid_on is None:
        return f"{invoice}, unpaid"  # how late it is grows every day: the list's days_late says it
    late = days_late(payment.due_on, payment.paid_on, today=payment.paid_on)
    when = f"{late} day{'s' if late != 1 else ''} late" if late > 0 else "on time"
    return f"{invoice}, paid {payment.paid_on} ({when})"


def timeline_entry(payment: ContactPayment) -> dict:
    """The invoice's `payment` row in the timeline, keyed by the payment's id; it happened when it was recorded."""
    paid = payment.paid_on is not None
    data = {"payment_id": str(payment.id), "invoice_reference": payment.invoice_reference,
            "amount": format(payment.amount.quantize(_FOUR_PLACES), "f"), "currency": payment.currency,
            "due_on": payment.due_on.isoformat(), "paid_on": payment.paid_on.isoformat() if paid else None,
            "days_late": days_late(payment.due_on, payment.paid_on, today=payment.paid_on) if paid else None}
    return timeline.entry(id=payment.id, kind="payment", occurred_at=payment.created_at, source=timeline.CONTACTS,
                          contact_id=payment.contact_id, summary=timeline_summary(payment), data=data)


# -- queries ----------------------------------------------------------------------------------------------

def _duplicate(invoice_reference: str) -> Conflict:
    return Conflict(f"The contact already has invoice {invoice_reference!r}; record its payment date with PATCH.",
                    invoice_reference=invoice_reference).for_readers(
        READ_SCOPE, otherwise="The contact already has this invoice.")


def _get(session: Session, contact_id: uuid.UUID, payment_id: uuid.UUID, *, lock: bool = False) -> ContactPayment:
    return contact_row(session, ContactPayment, contact_id, payment_id, what="payment", lock=lock)


class Lateness(NamedTuple):
    """The lateness rule's SQL over contact_payments, as built by lateness()."""

    paid: ColumnElement[bool]  # has a payment date that counts
    late: ColumnElement[bool]  # paid after its due date, or not paid and past it
    overdue: ColumnElement[bool]  # not paid and past its due date
    days_late: ColumnElement[int]  # days after its due date it was paid, or has been unpaid; 0 when not late


def lateness(today: date, *, paid_by: date | None = None) -> Lateness:
    """The lateness rule in SQL, the one definition the payments list and the termination history use (is_late()
    and days_late() are the same rule in Python, tested against it on PostgreSQL and SQLite).

    Late: paid after its due date, or not paid and past it on `today`. `paid_by`: a payment dated after it counts
    as not yet made (a history as of a past day); None counts every recorded payment date, so the list counts a
    payer's date up to a day ahead of UTC (PAID_AHEAD) as paid.
    """
    p = ContactPayment
    day = literal(today, Date())
    paid = p.paid_on.is_not(None)
    if paid_by is not None:
        paid = and_(paid, p.paid_on <= literal(paid_by, Date()))
    paid_late = and_(paid, p.paid_on > p.due_on)
    overdue = and_(~paid, p.due_on < day)
    days = case((paid_late, days_between(p.paid_on, p.due_on)), (overdue, days_between(day, p.due_on)), else_=0)
    return Lateness(paid=paid, late=or_(paid_late, overdue), overdue=overdue, days_late=days)


# -- use cases --------------------------------------------------------------------------------------------

def record_payment(uow: UnitOfWork, contact_id: uuid.UUID, data: Mapping, *, recorded_by: str) -> ContactPayment:
    """Record an invoice of a contact with its due date and, if known, its payment date; 409 for an invoice twice."""
    check_dates(data["due_on"], data.get("paid_on"), today=utc_today())
    with uow:
        session = uow.session
        hold_contact(session, contact_id)
        reference = data["invoice_reference"]
        taken = select(ContactPayment.seq).where(ContactPayment.contact_id == contact_id,
                                                 ContactPayment.invoice_reference == reference)
        if session.scalar(taken) is not None:
            raise _duplicate(reference)
        now = utcnow()
        payment = ContactPayment(id=new_id(), contact_id=contact_id, invoice_reference=reference,
                                 amount=data["amount"], currency=data["currency"], due_on=data["due_on"],
                                 paid_on=data.get("paid_on"), recorded_by=recorded_by, created_at=now,
                                 updated_at=now, version=1)
        session.add(payment)
        try:
            session.flush()
        except IntegrityError:  # the same invoice recorded at the same moment by another request
            raise _duplicate(reference) from None
        timeline.add_entries(session, [timeline_entry(payment)])
        uow.add_event("crm.payment.recorded", event_data(payment), subject=contact_id)
        uow.commit()
        return payment


def get_payment(uow: UnitOfWork, contact_id: uuid.UUID, payment_id: uuid.UUID) -> ContactPayment:
    """One payment of a contact (404 when either is unknown)."""
    with uow:
        return _get(uow.session, contact_id, payment_id)


def list_payments(uow: UnitOfWork, contact_id: uuid.UUID, *, limit: int, cursor: str | None,
                  sort: str | None = None, late: bool | None = None) -> dict:
    """A contact's payments, one page at a time; `late` keeps only the late (or only the punctual) ones."""
    stmt = select(ContactPayment).where(ContactPayment.contact_id == contact_id)
    if late is not None:
        condition = lateness(utc_today()).late
        stmt = stmt.where(condition if late else ~condition)
    with uow:
        session = uow.session
        page = paginate(session, stmt, ContactPayment.seq, limit=limit, cursor=cursor, sort=sort, columns=SORTS)
        if not page["items"] and session.scalar(select(Contact.seq).where(Contact.id == contact_id)) is None:
            raise missing_contact(session, contact_id)
        return page


def update_payment(uow: UnitOfWork, contact_id: uuid.UUID, payment_id: uuid.UUID, requested: Mapping, *,
                   precondition: Precondition = NO_PRECONDITION) -> ContactPayment:
    """Record (or correct) when an invoice was paid; setting a payment date publishes crm.payment.recorded."""
    with uow:
        session = uow.session
        payment = _get(session, contact_id, payment_id, lock=True)
        precondition.check(payment.version, required=False, what=f"payment {payment_id}")
        paid_on = requested["paid_on"]
        check_dates(payment.due_on, paid_on, today=utc_today())
        if paid_on == payment.paid_on:
            return payment
        payment.paid_on, payment.updated_at = paid_on, utcnow()
        payment.version += 1
        session.flush()
        timeline.refresh_entry(session, timeline_entry(payment))
        if paid_on is not None:
            uow.add_event("crm.payment.recorded", event_data(payment), subject=contact_id)
        uow.commit()
        return payment
