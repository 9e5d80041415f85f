"""Interactions and the timeline on an in-memory SQLite database (the suite's default database, no network)."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.common.catalog import make_event, parse_event
from services.common.consumer import InboxDispatcher
from services.common.problems import NotFound
from services.contacts import interactions, service, timeline
from services.contacts.handlers import HANDLERS
from services.contacts.models import InboxEntry

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _event(event_type: str, data: dict):
    return parse_event(make_event(event_type, data, source="/services/leads").to_json())


def _walk(fetch) -> list:
    """Every row of a paged list, following next_cursor until it runs out."""
    rows, cursor = [], None
    while True:
        page = fetch(cursor)
        rows += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def test_interactions_page_by_occurred_at_and_resolve_on_sqlite(runtime):
    contact = service.create_contact(runtime.uow(), {"email": "ann@example.com"})
    hours = [2, 0, 1, 1]
    made = [interactions.record_interaction(runtime.uow(), contact.id, {
        "type": "complaint", "channel": "web", "direction": "inbound", "category": "product", "summary": f"#{i}",
        "occurred_at": T0 + timedelta(hours=h)}, recorded_by="k").id for i, h in enumerate(hours)]
    expected = [made[i] for i in sorted(range(len(hours)), key=lambda i: (hours[i], i), reverse=True)]
    walked = _walk(lambda cursor: interactions.list_interactions(
        runtime.uow(read_only=True), contact.id, limit=1, cursor=cursor, sort="-occurred_at"))
    assert [row.id for row in walked] == expected

    resolved = interactions.update_interaction(runtime.uow(), contact.id, made[0],
                                               {"status": "resolved", "resolution": "Replaced"}, actor="lead")
    assert (resolved.status, resolved.resolved_by, resolved.version) == ("resolved", "lead", 2)
    page = interactions.list_interactions(runtime.uow(read_only=True), contact.id, limit=10, cursor=None,
                                          status="open")
    assert {row.id for row in page["items"]} == set(made[1:])
    with pytest.raises(NotFound):
        interactions.list_interactions(runtime.uow(read_only=True), uuid.uuid4(), limit=10, cursor=None)


def test_the_timeline_joins_lead_history_and_ignores_redeliveries_on_sqlite(runtime):
    dispatcher = InboxDispatcher(lambda **kw: runtime.uow(**kw), InboxEntry, HANDLERS)
    lead_id = uuid.uuid4()
    touched = _event("crm.lead.touched", {"lead_id": lead_id, "touch_id": uuid.uuid4(), "occurred_at": T0})
    created = _event("crm.lead.created", {"lead_id": lead_id, "email": "bo@example.com", "score": 10})
    assert dispatcher.dispatch_batch([created, touched]) == [True, True]
    assert dispatcher.dispatch(_event("crm.lead.touched", touched.data)) is True  # republished: same touch
    dispatcher.dispatch(_event("crm.lead.converted", {"lead_id": lead_id, "email": "bo@example.com"}))
    [contact] = service.list_contacts(runtime.uow(read_only=True), limit=5, cursor=None)["items"]

    rows = _walk(lambda cursor: timeline.list_timeline(runtime.uow(read_only=True), contact.id, limit=2,
                                                       cursor=cursor))
    assert [row.kind for row in rows] == ["lead_converted", "lead_created", "lead_touched"]
    only = timeline.list_timeline(runtime.uow(read_only=True), contact.id, limit=5, cursor=None, kinds=["lead_touched"])
    assert [row.kind for row in only["items"]] == ["lead_touched"]
