"""The pure rules of interactions and the timeline: what an interaction may hold, how events read on the timeline."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from services.common.catalog import make_event, parse_event
from services.common.problems import Conflict, Unprocessable
from services.contacts import timeline
from services.contacts.handlers import HANDLERS
from services.contacts.interactions import (
    FUTURE_SKEW,
    check_change,
    check_new,
    timeline_entry,
    timeline_summary,
)
from services.contacts.models import Interaction

NOW = datetime(2026, 3, 14, 10, 30, tzinfo=UTC)


def _refused(call) -> dict:
    with pytest.raises(Unprocessable) as err:
        call()
    return err.value.extra["errors"]


# -- interactions ---------------------------------------------------------------------------------------------

def test_a_call_with_channel_and_direction_passes():
    check_new({"type": "call", "channel": "phone", "direction": "inbound", "summary": "x"}, now=NOW)


def test_a_note_needs_no_channel_or_direction_but_a_call_does():
    check_new({"type": "note", "summary": "x"}, now=NOW)
    assert set(_refused(lambda: check_new({"type": "call", "summary": "x"}, now=NOW))) == {"channel", "direction"}


def test_a_complaint_needs_a_category_and_nothing_else_may_have_one():
    complaint = {"type": "complaint", "channel": "email", "direction": "inbound"}
    assert set(_refused(lambda: check_new(complaint, now=NOW))) == {"category"}
    check_new({**complaint, "category": "billing"}, now=NOW)
    assert set(_refused(lambda: check_new({"type": "note", "category": "billing"}, now=NOW))) == {"category"}


def test_occurred_at_may_run_ahead_by_the_skew_but_not_further():
    base = {"type": "note", "summary": "x"}
    check_new({**base, "occurred_at": NOW + FUTURE_SKEW}, now=NOW)
    check_new({**base, "occurred_at": NOW - timedelta(days=400)}, now=NOW)
    errors = _refused(lambda: check_new({**base, "occurred_at": NOW + FUTURE_SKEW + timedelta(seconds=1)}, now=NOW))
    assert set(errors) == {"occurred_at"}


def test_a_time_before_1900_is_refused_also_one_that_cannot_be_expressed_in_utc():
    year_one = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    assert set(_refused(lambda: check_new({"type": "note", "occurred_at": year_one}, now=NOW))) == {"occurred_at"}


@pytest.mark.parametrize("requested, fields", [
    ({"status": "resolved", "resolution": "Refunded"}, {"status", "resolution"}),
    ({"resolution": "Refunded"}, {"resolution"}),
])
def test_only_complaints_take_a_status_or_a_resolution(requested, fields):
    assert set(_refused(lambda: check_change("call", None, requested))) == fields
    check_change("call", None, {"summary": "corrected", "outcome": None})


def test_resolving_a_complaint_needs_a_resolution():
    assert set(_refused(lambda: check_change("complaint", "open", {"status": "resolved"}))) == {"resolution"}
    check_change("complaint", "open", {"status": "resolved", "resolution": "Refunded"})


def test_an_open_complaint_takes_no_resolution_without_being_resolved():
    assert set(_refused(lambda: check_change("complaint", "open", {"resolution": "Refunded"}))) == {"resolution"}


def test_a_resolved_complaint_keeps_its_status_but_its_resolution_may_be_corrected():
    with pytest.raises(Conflict):
        check_change("complaint", "resolved", {"status": "open"})
    check_change("complaint", "resolved", {"resolution": "Refunded in full"})
    check_change("complaint", "resolved", {"status": "resolved"})


def _interaction(**fields) -> Interaction:
    values = {"id": uuid.uuid4(), "contact_id": uuid.uuid4(), "type": "call", "channel": "phone",
              "direction": "inbound", "occurred_at": NOW, "summary": "Asked about the invoice", "outcome": None,
              "category": None, "status": None, "resolved_at": None}
    return Interaction(**{**values, **fields})


def test_the_timeline_line_says_what_how_and_the_summary():
    assert timeline_summary(_interaction()) == "Call (inbound, phone): Asked about the invoice"
    assert timeline_summary(_interaction(type="note", channel=None, direction=None, summary="VIP")) == "Note: VIP"
    complaint = _interaction(type="complaint", channel="in_person", category="billing", status="open",
                             summary="Charged twice")
    assert timeline_summary(complaint) == "Complaint about billing, open (inbound, in person): Charged twice"


def test_a_complaint_is_its_own_timeline_kind_and_a_long_summary_is_clipped():
    complaint = timeline_entry(_interaction(type="complaint", category="delivery", status="open", summary="x" * 2000))
    assert complaint["kind"] == "complaint" and complaint["data"]["status"] == "open"
    assert len(complaint["summary"]) == timeline.SUMMARY_MAX
    assert timeline_entry(_interaction())["kind"] == "interaction"


# -- the projection of other services' events ----------------------------------------------------------------

def _event(event_type: str, data: dict, source: str = "/services/loyalty"):
    return parse_event(make_event(event_type, data, source=source).to_json())


def test_a_purchase_is_keyed_by_the_purchase_and_reads_as_money_and_points():
    purchase_id, contact_id = uuid.uuid4(), uuid.uuid4()
    event = _event("crm.purchase.recorded", {
        "purchase_id": purchase_id, "member_id": uuid.uuid4(), "contact_id": contact_id, "program_id": uuid.uuid4(),
        "amount": Decimal("120.00"), "currency": "EUR", "occurred_at": NOW, "points": 12})
    row = timeline.from_event(event)
    assert (row["id"], row["kind"], row["contact_id"], row["lead_id"]) == (purchase_id, "purchase", contact_id, None)
    assert row["summary"] == "Purchase 120.00 EUR, 12 points" and row["source"] == "loyalty"
    assert row["occurred_at"] == NOW and row["data"]["amount"] == "120.00" and row["data"]["points"] == 12


def test_lead_events_belong_to_the_lead_until_it_is_linked():
    lead_id, touch_id = uuid.uuid4(), uuid.uuid4()
    created = timeline.from_event(_event("crm.lead.created", {"lead_id": lead_id, "email": "a@example.com",
                                                              "source": "web", "score": 40}, "/services/leads"))
    touched = timeline.from_event(_event("crm.lead.touched", {"lead_id": lead_id, "touch_id": touch_id,
                                                              "source": "event", "campaign": "spring",
                                                              "occurred_at": NOW}, "/services/leads"))
    assert (created["lead_id"], created["contact_id"], created["summary"]) == (lead_id, None,
                                                                            "Lead captured from web, score 40")
    assert "a@example.com" not in str(created), "the timeline copies no e-mail address"
    assert (touched["id"], touched["summary"]) == (touch_id, "Lead captured again from event / spring")


@pytest.mark.parametrize("tier, previous, summary", [
    ("gold", "silver", "Tier changed from silver to gold"), ("gold", None, "Reached tier gold"),
    (None, "gold", "Left tier gold"),
])
def test_a_tier_change_reads_as_what_changed(tier, previous, summary):
    event = _event("crm.member.tier_changed", {"member_id": uuid.uuid4(), "contact_id": uuid.uuid4(),
                                               "program_id": uuid.uuid4(), "tier": tier, "previous_tier": previous,
                                               "occurred_at": NOW})
    assert timeline.from_event(event)["summary"] == summary


def test_points_adjustments_show_their_sign_and_reason():
    event = _event("crm.points.adjusted", {
        "transaction_id": uuid.uuid4(), "member_id": uuid.uuid4(), "contact_id": uuid.uuid4(),
        "program_id": uuid.uuid4(), "kind": "reverse", "points": -12, "balance": 30, "lifetime_points": 42,
        "reason": "returned"})
    assert timeline.from_event(event)["summary"] == "Points reversed by -12 (balance 30): returned"


def test_every_projected_event_type_has_a_contacts_handler_and_every_kind_is_known():
    assert set(timeline.PROJECTED_TYPES) <= set(HANDLERS)
    with pytest.raises(ValueError):
        timeline.entry(id=uuid.uuid4(), kind="gossip", occurred_at=NOW, source="x", contact_id=uuid.uuid4())
    with pytest.raises(ValueError):
        timeline.entry(id=uuid.uuid4(), kind="interaction", occurred_at=NOW, source="x")
