"""The partners' termination adapter on PostgreSQL: histories equal to the scorecards, built for a batch of partners in
three queries; terminating a partner closes its portal and records one event."""
from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from crm_plugins.types import DisputeCount
from sqlalchemy import event, select

from services.common.catalog import parse_event
from services.common.problems import NotFound
from services.partners import scorecards
from services.partners.models import Delivery, Dispute, Partner
from services.partners.termination_history import (
    EVIDENCE_EVENTS, eligible_partners, partner_histories, terminate_partner)
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

PORTAL = "/api/v1/partner-portal"
# The window of a history as of any time on 2025-12-31 over 364 days is the year 2025, day for day.
AS_OF = datetime(2025, 12, 31, 15, 0, tzinfo=timezone.utc)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def delivery(partner, reference, promised, delivered, *, ordered="100", got=None, rejected="0", amount="1000.00",
             agreed="1000.00") -> Delivery:
    got = got if got is not None else ("0" if delivered is None else ordered)
    return Delivery(partner_id=partner.id, order_reference=reference, promised_on=date.fromisoformat(promised),
                    delivered_on=None if delivered is None else date.fromisoformat(delivered),
                    quantity_ordered=Decimal(ordered), quantity_delivered=Decimal(got),
                    quantity_rejected=Decimal(rejected), amount=Decimal(amount),
                    agreed_amount=None if agreed is None else Decimal(agreed), currency="EUR")


def dispute(partner, category, opened_at, status="open") -> Dispute:
    resolved = status == "resolved"
    return Dispute(partner_id=partner.id, category=category, amount=Decimal("10.00"), currency="EUR", status=status,
                   resolution="credit_note" if resolved else None, resolved_at=at("2025-12-01T00:00:00") if resolved
                   else None, opened_by="internal", opened_at=at(opened_at), updated_at=at(opened_at))


@pytest.fixture
def runtime(app):
    return app.extensions["crm.runtime"]


@pytest.fixture
def partners(runtime):
    """Two partners with late deliveries, rejects, price breaches and disputes in and around 2025, a terminated
    one and a prospect with nothing."""
    steel = Partner(id=uuid.uuid4(), name="Steelworks", type="supplier", status="active")
    freight = Partner(id=uuid.uuid4(), name="Freight Co", type="distributor", status="onboarding")
    gone = Partner(id=uuid.uuid4(), name="Gone", type="vendor", status="terminated")
    new = Partner(id=uuid.uuid4(), name="Newcomer", type="vendor", status="prospect")
    with runtime.session_factory() as s:
        s.add_all([steel, freight, gone, new])
        s.flush()
        s.add_all([
            delivery(steel, "S1", "2025-03-10", "2025-03-10"),                                   # on time
            delivery(steel, "S2", "2025-06-01", "2025-06-09", got="90", rejected="15"),          # late, short, rejects
            delivery(steel, "S3", "2025-10-15", "2025-10-14", rejected="5", amount="1200.00"),   # price breach
            delivery(steel, "S4", "2025-12-31", None, agreed=None),                              # never came
            delivery(steel, "S0", "2024-12-31", "2025-01-20"),                                   # owed before
            delivery(steel, "S9", "2026-01-01", "2026-01-01"),                                   # owed after
            delivery(freight, "F1", "2025-05-05", "2025-05-05", ordered="10", amount="500.00", agreed="450.00"),
            delivery(freight, "F2", "2025-11-11", "2025-11-20", ordered="10", rejected="1", amount="500.00",
                     agreed="500.00"),
            dispute(steel, "quality", "2025-02-01T00:00:00"),
            dispute(steel, "quality", "2025-11-20T10:00:00", status="resolved"),
            dispute(steel, "quality", "2025-12-31T23:59:59"),                   # the window's last instant
            dispute(steel, "price", "2025-10-16T08:00:00", status="escalated"),
            dispute(steel, "delay", "2024-06-01T00:00:00", status="investigating"),  # before, still unresolved
            dispute(steel, "invoice", "2024-05-01T00:00:00", status="resolved"),     # before, resolved
            dispute(steel, "quantity", "2026-01-01T00:00:00"),                        # after as_of
            dispute(freight, "delay", "2025-11-21T00:00:00"),
        ])
        s.commit()
    return steel.id, freight.id, gone.id, new.id


def _figures(metrics, card: dict) -> tuple[dict, dict]:
    """A ScorecardMetrics as the counts and rates of a scorecard (every figure the card shows)."""
    return ({name: getattr(metrics, name) for name in card["counts"]},
            {name: getattr(metrics, name) for name in card["rates"]})


def test_histories_of_a_batch_equal_the_scorecards_and_count_disputes_by_category_in_three_queries(runtime, partners):
    steel, freight, gone, new = partners
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    with runtime.session_factory() as s:
        event.listen(runtime.engine, "before_cursor_execute", count)
        try:
            histories = partner_histories(s, [steel, freight, gone, new, uuid.uuid4()], AS_OF, 364)
        finally:
            event.remove(runtime.engine, "before_cursor_execute", count)
        quarter = partner_histories(s, [steel, freight], AS_OF, 91)  # 2025-10-01 to 2025-12-31

    # The partners, every scorecard figure, the disputes by category: however many partners.
    assert len([q for q in statements if q.lstrip().upper().startswith("SELECT")]) == 3
    assert set(histories) == {steel, freight, gone, new}, "an unknown id is left out"
    subject, history = histories[steel]
    assert (subject.kind, subject.id, subject.name, subject.status) == ("partner", str(steel), "Steelworks", "active")
    assert (history.since, history.as_of) == (date(2025, 1, 1), date(2025, 12, 31))
    assert histories[freight][0].status == "onboarding"

    sc = history.scorecard
    assert (sc.deliveries, sc.delivered, sc.on_time, sc.priced, sc.within_price, sc.disputes) == (4, 3, 2, 3, 2, 4)
    assert (sc.quantity_ordered, sc.quantity_delivered, sc.quantity_rejected) == (
        Decimal("400.000"), Decimal("290.000"), Decimal("20.000"))
    assert (history.late_deliveries, history.price_breaches, history.disputes_opened) == (2, 1, 4)
    assert history.disputes == (
        DisputeCount(category="quality", opened=3, unresolved=2),
        DisputeCount(category="quantity", opened=0, unresolved=0),
        DisputeCount(category="delay", opened=0, unresolved=1),
        DisputeCount(category="price", opened=1, unresolved=1),
        DisputeCount(category="invoice", opened=0, unresolved=0),
    )
    freight_history = histories[freight][1]
    assert (freight_history.late_deliveries, freight_history.price_breaches, freight_history.disputes_opened,
            freight_history.scorecard.quantity_rejected) == (1, 1, 1, Decimal("1.000"))
    empty = histories[new][1]
    assert (empty.scorecard.deliveries, empty.scorecard.on_time_rate, empty.disputes_opened) == (0, None, 0)

    # Every figure equals scorecards.py's for the same days: the year, and the quarter of the shorter window.
    for label, found in (("2025", histories), ("2025-Q4", quarter)):
        for partner_id in (steel, freight):
            card = scorecards.scorecard(runtime.uow(read_only=True), partner_id, scorecards.parse_period(label),
                                        plugins=None, weights=scorecards.DEFAULT_WEIGHTS)
            assert _figures(found[partner_id][1].scorecard, card) == (card["counts"], card["rates"]), (
                label, partner_id)
    assert quarter[steel][1].since == date(2025, 10, 1)
    assert (quarter[steel][1].late_deliveries, quarter[steel][1].price_breaches) == (1, 1)

    with pytest.raises(ValueError):
        partner_histories(s, [steel], AS_OF.replace(tzinfo=None), 364)


def test_terminating_a_partner_closes_its_portal_once_and_only_in_the_callers_transaction(app, client, api, store,
                                                                                          runtime):
    made = []
    for name in ("A", "B"):
        partner = api.partner(f"Partner {name}", "supplier", status="active")
        api.contract(partner["id"], title=f"{name} contract")
        made.append((uuid.UUID(partner["id"]),
                     identity_headers(kind="partner", partner_id=partner["id"], key_id=f"key-{name}")))
    (a, a_key), (b, b_key) = made
    assert client.get(f"{PORTAL}/contracts", headers=a_key).status_code == 200
    with runtime.session_factory() as s:
        first = eligible_partners(s, None, 1)
        rest = eligible_partners(s, first[0][0], 10)
        assert [partner_id for _seq, partner_id in first + rest] == [a, b]
    recommendation, decision = uuid.uuid4(), uuid.uuid4()

    # Inside the caller's unit of work it commits nothing by itself: the decision and the termination go together.
    with runtime.uow() as outer:
        assert terminate_partner(outer, a, recommendation_id=recommendation, decision_id=decision,
                                 reason="Late and over price") == "partner_terminated"
        outer.rollback()
    assert client.get(f"{PORTAL}/contracts", headers=a_key).status_code == 200
    assert store.events("crm.partner.terminated") == []

    assert terminate_partner(runtime.uow(), a, recommendation_id=recommendation, decision_id=decision,
                             reason="Late and over price") == "partner_terminated"
    refused = client.get(f"{PORTAL}/contracts", headers=a_key)
    assert refused.status_code == 403 and refused.json["partner_status"] == "terminated"
    assert client.get(f"{PORTAL}/contracts", headers=b_key).status_code == 200, "the other partner keeps its portal"
    with runtime.session_factory() as s:
        assert s.scalar(select(Partner.version).where(Partner.id == a)) == 2
        assert [partner_id for _seq, partner_id in eligible_partners(s, None, 10)] == [b]

    assert terminate_partner(runtime.uow(), a, recommendation_id=uuid.uuid4(), decision_id=uuid.uuid4(),
                             reason="again") == "partner_already_terminated"
    (terminated,) = store.events("crm.partner.terminated")
    assert terminated["subject"] == str(a)
    data = terminated["data"]
    assert (data["partner_id"], data["recommendation_id"], data["decision_id"], data["reason"]) == (
        str(a), str(recommendation), str(decision), "Late and over price")
    assert datetime.fromisoformat(data["occurred_at"]).tzinfo is not None
    with runtime.session_factory() as s:
        assert s.scalar(select(Partner.version).where(Partner.id == a)) == 2, "no second change"
    with pytest.raises(NotFound):
        terminate_partner(runtime.uow(), uuid.uuid4(), recommendation_id=recommendation, decision_id=decision,
                          reason="nobody")

    # A recorded delivery or dispute names the partner whose history it changes.
    delivered = client.post(f"/api/v1/partners/{b}/deliveries", headers=identity_headers("partners:write"), json={
        "order_reference": "B-1", "promised_on": "2025-05-05", "delivered_on": "2025-05-06",
        "quantity_ordered": "1", "quantity_delivered": "1", "amount": "10.00", "currency": "EUR"})
    assert delivered.status_code == 201, delivered.text
    recorded = parse_event(json.dumps(store.events("crm.delivery.recorded")[-1]))
    assert EVIDENCE_EVENTS["crm.delivery.recorded"](recorded) == b
