"""The lateness rule of invoice payments (payments.py) is one rule: the Python form (is_late, days_late) that the
API's `late` and `days_late` show and the SQL form (lateness) that the list's `late` filter and the termination
history count agree on every edge case, on PostgreSQL and on SQLite."""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from services.contacts import payments
from services.contacts.models import Contact, ContactPayment

pytestmark = pytest.mark.integration

TODAY = date(2026, 6, 1)
DAY = timedelta(days=1)

# reference -> (due_on, paid_on, (late, days_late) with every payment date counted,
#               (late, days_late) as TODAY saw it: a payment dated after it not yet made)
CASES = {
    "paid-on-the-due-date": (TODAY - 10 * DAY, TODAY - 10 * DAY, (False, 0), (False, 0)),
    "paid-a-day-late": (TODAY - 10 * DAY, TODAY - 9 * DAY, (True, 1), (True, 1)),
    "paid-early": (TODAY - 10 * DAY, TODAY - 12 * DAY, (False, 0), (False, 0)),
    "unpaid-and-overdue": (TODAY - 20 * DAY, None, (True, 20), (True, 20)),
    "unpaid-due-today": (TODAY, None, (False, 0), (False, 0)),
    "unpaid-not-yet-due": (TODAY + 5 * DAY, None, (False, 0), (False, 0)),
    # A payer's date may be a day ahead of UTC: paid, and a day late, unless only dates up to TODAY count.
    "paid-ahead-of-utc-due-today": (TODAY, TODAY + DAY, (True, 1), (False, 0)),
    "paid-ahead-of-utc-overdue": (TODAY - 3 * DAY, TODAY + DAY, (True, 4), (True, 3)),
}


def _seed(runtime) -> None:
    with runtime.session_factory() as s, s.begin():
        contact = Contact(email="payer@example.com", email_normalized="payer@example.com")
        s.add(contact)
        s.flush()
        s.add_all([ContactPayment(contact_id=contact.id, invoice_reference=ref, amount=Decimal("100"),
                                  currency="EUR", due_on=due_on, paid_on=paid_on, recorded_by="test")
                   for ref, (due_on, paid_on, _all, _as_of) in CASES.items()])


def _in_sql(runtime, rule: payments.Lateness) -> dict[str, tuple[bool, int]]:
    p = ContactPayment
    stmt = select(p.invoice_reference, rule.late, rule.days_late)
    with runtime.session_factory() as s:
        return {row[0]: (bool(row[1]), int(row[2])) for row in s.execute(stmt)}


@pytest.mark.parametrize("paid_by", [None, TODAY], ids=["every-payment-date", "dates-up-to-today"])
def test_the_sql_and_the_python_lateness_rules_agree_on_every_edge_case(any_runtime, paid_by):
    _seed(any_runtime)
    in_sql = _in_sql(any_runtime, payments.lateness(TODAY, paid_by=paid_by))
    in_python = {ref: (payments.is_late(due_on, paid_on, today=TODAY, paid_by=paid_by),
                       payments.days_late(due_on, paid_on, today=TODAY, paid_by=paid_by))
                 for ref, (due_on, paid_on, _all, _as_of) in CASES.items()}
    expected = {ref: every if paid_by is None else as_of for ref, (_d, _p, every, as_of) in CASES.items()}
    assert in_python == expected
    assert in_sql == expected


def test_the_sql_rule_counts_paid_and_overdue_invoices_as_the_termination_history_does(any_runtime):
    _seed(any_runtime)
    rule = payments.lateness(TODAY, paid_by=TODAY)
    with any_runtime.session_factory() as s:
        paid = set(s.scalars(select(ContactPayment.invoice_reference).where(rule.paid)))
        overdue = set(s.scalars(select(ContactPayment.invoice_reference).where(rule.overdue)))
        punctual = set(s.scalars(select(ContactPayment.invoice_reference).where(~rule.late)))
    assert paid == {"paid-on-the-due-date", "paid-a-day-late", "paid-early"}
    assert overdue == {"unpaid-and-overdue", "paid-ahead-of-utc-overdue"}
    assert punctual == {"paid-on-the-due-date", "paid-early", "unpaid-due-today", "unpaid-not-yet-due",
                        "paid-ahead-of-utc-due-today"}
