"""The customers' termination history (termination_history.py) on PostgreSQL and on SQLite: the figures of a small
hand-made record, a fixed number of queries per batch, the eligible customers, and terminating one once."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from crm_plugins.types import CustomerAnalytics as AnalyticsRow
from crm_plugins.types import CustomerSpend, FraudFlag, PaymentSummary, TerminationSubject
from sqlalchemy import event, select

from services.contacts import termination_history as history
from services.contacts.models import (
    AnalyticsRefresh,
    Contact,
    ContactFraudFlag,
    ContactPayment,
    ContactPurchase,
    ContactReturn,
    CustomerAnalytics,
    Interaction,
    OutboxMessage,
    TimelineEntry,
)

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TODAY = AS_OF.date()
IN_WINDOW = AS_OF - timedelta(days=30)
BEFORE_WINDOW = AS_OF - timedelta(days=400)


def _complaint(contact_id, occurred_at, *, resolved: bool) -> Interaction:
    return Interaction(contact_id=contact_id, type="complaint", channel="email", direction="inbound",
                       occurred_at=occurred_at, summary="Late again", recorded_by="test", category="delivery",
                       status="resolved" if resolved else "open", resolution="Sorry" if resolved else None,
                       resolved_at=occurred_at if resolved else None, resolved_by="test" if resolved else None)


def _purchase(contact_id, amount, currency="EUR", *, at=IN_WINDOW, discount=None, coupon=None) -> ContactPurchase:
    return ContactPurchase(purchase_id=uuid.uuid4(), contact_id=contact_id, amount=Decimal(amount), currency=currency,
                           occurred_at=at, discount=None if discount is None else Decimal(discount),
                           coupon_code=coupon)


def _payment(contact_id, ref, due_on: date, paid_on: date | None) -> ContactPayment:
    return ContactPayment(contact_id=contact_id, invoice_reference=ref, amount=Decimal("100"), currency="EUR",
                          due_on=due_on, paid_on=paid_on, recorded_by="test")


def _seed(runtime) -> dict[str, uuid.UUID]:
    """Ann: a full record. Bob: only an e-mail and nothing else. Cy: terminated already."""
    with runtime.session_factory() as s, s.begin():
        ann = Contact(email="ann@example.com", email_normalized="ann@example.com", first_name="Ann", last_name="Lee")
        bob = Contact(email="bob@example.com", email_normalized="bob@example.com")
        cy = Contact(email="cy@example.com", email_normalized="cy@example.com", status="terminated",
                     terminated_at=AS_OF)
        s.add_all([ann, bob, cy])
        s.flush()
        a = ann.id
        s.add_all([_complaint(a, IN_WINDOW, resolved=False), _complaint(a, IN_WINDOW, resolved=True),
                   _complaint(a, AS_OF - timedelta(days=200), resolved=True),
                   _complaint(a, BEFORE_WINDOW, resolved=False),  # before the window: not counted
                   Interaction(contact_id=a, type="note", occurred_at=IN_WINDOW, summary="x", recorded_by="t")])
        discounted = _purchase(a, "100.00", discount="10.00")
        s.add_all([discounted, _purchase(a, "50.00", coupon="SPRING"), _purchase(a, "200.00", discount="0"),
                   _purchase(a, "30.00", "USD"), _purchase(a, "999.00", at=BEFORE_WINDOW, coupon="OLD"),
                   ContactReturn(return_id=uuid.uuid4(), purchase_id=discounted.purchase_id, contact_id=a,
                                 amount=Decimal("40.00"), currency="EUR", occurred_at=IN_WINDOW + timedelta(days=1))])
        s.add_all([_payment(a, "on-time", TODAY - timedelta(days=60), TODAY - timedelta(days=61)),
                   _payment(a, "late-5", TODAY - timedelta(days=50), TODAY - timedelta(days=45)),
                   _payment(a, "unpaid-20", TODAY - timedelta(days=20), None),
                   _payment(a, "paid-after-as-of", TODAY - timedelta(days=3), TODAY + timedelta(days=2)),
                   _payment(a, "not-yet-due", TODAY + timedelta(days=10), None),  # after the window
                   _payment(a, "old", TODAY - timedelta(days=500), None)])  # before the window
        s.add_all([ContactFraudFlag(contact_id=a, code="chargeback", reason="Disputed two charges", flagged_by="t",
                                    flagged_at=IN_WINDOW),
                   ContactFraudFlag(contact_id=a, code="stolen_card", reason="Card reported", flagged_by="t",
                                    flagged_at=IN_WINDOW, cleared_at=IN_WINDOW, cleared_by="t", clear_reason="Ok")])
        for currency, status, quadrant in (("EUR", "superseded", "best"), ("EUR", "completed", "worst"),
                                           ("USD", "completed", "best")):
            refresh = AnalyticsRefresh(currency=currency, as_of=AS_OF - timedelta(days=1), parameters={},
                                       trigger="api", requested_by="test", status=status, summary={}, timings={})
            s.add(refresh)
            s.flush()
            s.add(CustomerAnalytics(refresh_id=refresh.id, contact_id=a, quadrant=quadrant,
                                    margin_total_units=123_4500, cost_total_units=200_0000, clv_units=-50_0000))
        return {"ann": a, "bob": bob.id, "cy": cy.id}


def test_a_customers_history_counts_the_window_per_source_in_a_fixed_number_of_queries(any_runtime):
    ids = _seed(any_runtime)
    statements = []

    def count(_conn, _cursor, statement, *_args):
        if statement.startswith("SELECT"):  # not SQLite's BEGIN
            statements.append(statement)

    event.listen(any_runtime.engine, "before_cursor_execute", count)
    try:
        with any_runtime.session_factory() as s:
            found = history.customer_histories(s, [ids["ann"], ids["bob"], ids["cy"], uuid.uuid4()], AS_OF, 365)
    finally:
        event.remove(any_runtime.engine, "before_cursor_execute", count)
    # One query per source whatever the batch's size; the analytics row comes with the contacts.
    assert len(statements) == 6
    assert set(found) == {ids["ann"], ids["bob"], ids["cy"]}, "an unknown id is left out"
    subject, ann = found[ids["ann"]]
    assert subject == TerminationSubject(kind="customer", id=str(ids["ann"]), name="Ann Lee", status="active")
    assert found[ids["bob"]][0].name == "bob@example.com" and found[ids["cy"]][0].status == "terminated"
    assert (ann.as_of, ann.since) == (AS_OF, AS_OF - timedelta(days=365))
    assert (ann.complaints, ann.open_complaints, ann.purchases) == (3, 1, 4)
    assert ann.spend == (
        CustomerSpend(currency="EUR", purchases=3, revenue=Decimal("350.0000"), discounted_purchases=2,
                      discounted_revenue=Decimal("150.0000"), discount_total=Decimal("10.0000"), coupon_purchases=1,
                      returns=1, returned_amount=Decimal("40.0000")),
        CustomerSpend(currency="USD", purchases=1, revenue=Decimal("30.0000")))
    assert ann.spend[0].discounted_share == Decimal("0.4286")
    # late-5 paid 5 days late; unpaid-20 overdue 20 days; paid-after-as-of unpaid at as_of, 3 days overdue.
    assert ann.payments == PaymentSummary(due=4, paid=2, late=3, unpaid_overdue=2, days_late_total=28,
                                          max_days_late=20)
    assert ann.fraud_flags == (FraudFlag(code="chargeback", reason="Disputed two charges", flagged_at=IN_WINDOW),)
    assert ann.analytics == AnalyticsRow(as_of=AS_OF - timedelta(days=1), currency="EUR", quadrant="worst",
                                         margin=Decimal("123.4500"), cost_to_serve=Decimal("200.0000"),
                                         clv=Decimal("-50.0000"))
    bob = found[ids["bob"]][1]
    assert (bob.complaints, bob.purchases, bob.spend, bob.payments, bob.fraud_flags, bob.analytics) == (
        0, 0, (), PaymentSummary(), (), None)
    with any_runtime.session_factory() as s:
        in_usd = history.customer_histories(s, [ids["ann"]], AS_OF, 365, currency="USD")[ids["ann"]][1]
        assert in_usd.analytics.quadrant == "best"
        narrow = history.customer_histories(s, [ids["ann"]], AS_OF, 40)[ids["ann"]][1]
        assert (narrow.complaints, narrow.payments.due, narrow.purchases) == (2, 2, 4)
        assert history.customer_histories(s, [], AS_OF, 365) == {}


def test_only_active_customers_are_eligible_in_seq_order_and_terminating_one_happens_once(any_runtime):
    ids = _seed(any_runtime)
    with any_runtime.session_factory() as s:
        eligible = history.eligible_customers(s, None, 10)
        assert [contact_id for _seq, contact_id in eligible] == [ids["ann"], ids["bob"]]
        assert history.eligible_customers(s, eligible[0][0], 10) == eligible[1:]
        assert history.eligible_customers(s, None, 1) == eligible[:1]
    recommendation, decision = uuid.uuid4(), uuid.uuid4()
    for expected in (history.CONTACT_TERMINATED, history.CONTACT_ALREADY_TERMINATED):
        with any_runtime.uow() as uow:  # the caller's unit of work (the decision's) commits
            assert history.terminate_contact(uow, ids["ann"], recommendation_id=recommendation, decision_id=decision,
                                             reason="Serial complainer") == expected
            uow.commit()
    with any_runtime.session_factory() as s:
        ann = s.scalar(select(Contact).where(Contact.id == ids["ann"]))
        assert (ann.status, ann.version) == ("terminated", 2) and ann.terminated_at is not None
        events = list(s.scalars(select(OutboxMessage).where(OutboxMessage.event_type == "crm.contact.terminated")))
        assert len(events) == 1, "terminating twice records one event"
        assert [c for _s, c in history.eligible_customers(s, None, 10)] == [ids["bob"]]
        entries = list(s.scalars(select(TimelineEntry).where(TimelineEntry.kind == "terminated")))
    assert [(e.id, e.contact_id, e.source) for e in entries] == [(decision, ids["ann"], "contacts")], "once"
    assert entries[0].data == {"recommendation_id": str(recommendation), "decision_id": str(decision),
                               "reason": "Serial complainer"}
    assert entries[0].summary.endswith(": Serial complainer") and entries[0].occurred_at == ann.terminated_at
    data = json.loads(events[0].payload)["data"]
    assert data["contact_id"] == str(ids["ann"]) and data["recommendation_id"] == str(recommendation)
    assert (data["decision_id"], data["reason"]) == (str(decision), "Serial complainer")
