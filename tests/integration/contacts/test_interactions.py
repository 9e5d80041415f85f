"""A contact's interactions on the real PostgreSQL: record, list, filter, resolve, and their timeline entries."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from services.contacts.models import Interaction, TimelineEntry
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

BASE = "/api/v1/contacts"
CALL = {"type": "call", "channel": "phone", "direction": "inbound", "summary": "Asked about the March invoice"}
COMPLAINT = {"type": "complaint", "channel": "email", "direction": "inbound", "category": "billing",
             "summary": "Charged twice for one order"}


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.json


def _contact(client, headers, email="ann@example.com") -> str:
    response = client.post(BASE, json={"email": email}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["id"]


def _record(client, headers, contact_id, body=None, **extra) -> dict:
    response = client.post(f"{BASE}/{contact_id}/interactions", json={**(body or CALL), **extra}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def _count(runtime, model) -> int:
    with runtime.session_factory() as s:
        return s.scalar(select(func.count()).select_from(model))


def _entry(runtime, entry_id) -> TimelineEntry | None:
    with runtime.session_factory() as s:
        return s.scalar(select(TimelineEntry).where(TimelineEntry.id == uuid.UUID(entry_id)))


@pytest.fixture
def contact_id(client, rw_headers) -> str:
    return _contact(client, rw_headers)


# -- recording ------------------------------------------------------------------------------------------------

def test_recording_a_call_stores_it_with_its_recorder_and_adds_it_to_the_timeline(client, rw_headers, contact_id,
                                                                                  runtime, store):
    before = datetime.now(UTC)
    response = client.post(f"{BASE}/{contact_id}/interactions", json={**CALL, "outcome": "Sent a copy"},
                           headers=rw_headers)
    assert response.status_code == 201, response.json
    body = response.json
    assert response.headers["Location"] == f"{BASE}/{contact_id}/interactions/{body['id']}"
    assert response.headers["ETag"] == 'W/"1"'
    assert {k: body[k] for k in ("contact_id", "type", "channel", "direction", "summary", "outcome", "recorded_by",
                                 "category", "status", "resolution", "version")} == {
        "contact_id": contact_id, "type": "call", "channel": "phone", "direction": "inbound",
        "summary": CALL["summary"], "outcome": "Sent a copy", "recorded_by": "test-key", "category": None,
        "status": None, "resolution": None, "version": 1}
    assert before <= datetime.fromisoformat(body["occurred_at"]) <= datetime.now(UTC), "occurred_at defaults to now"
    entry = _entry(runtime, body["id"])
    assert (entry.kind, str(entry.contact_id), entry.source) == ("interaction", contact_id, "contacts")
    assert entry.summary == "Call (inbound, phone): Asked about the March invoice"
    assert entry.data["outcome"] == "Sent a copy"
    [event] = store.events("crm.interaction.recorded")
    assert event["data"]["interaction_id"] == body["id"] and event["data"]["type"] == "call"
    assert "summary" not in event["data"], "the text stays in the contacts service"


def test_occurred_at_keeps_the_instant_given_in_any_zone(client, rw_headers, contact_id):
    body = _record(client, rw_headers, contact_id, occurred_at="2026-03-14T12:30:00+02:00")
    assert datetime.fromisoformat(body["occurred_at"]) == datetime(2026, 3, 14, 10, 30, tzinfo=UTC)


def test_a_note_needs_no_channel_and_a_complaint_starts_open(client, rw_headers, contact_id, runtime):
    note = _record(client, rw_headers, contact_id, {"type": "note", "summary": "Prefers calls after 5 pm"})
    assert (note["channel"], note["direction"], note["status"]) == (None, None, None)
    complaint = _record(client, rw_headers, contact_id, COMPLAINT)
    assert (complaint["status"], complaint["category"], complaint["resolved_at"]) == ("open", "billing", None)
    entry = _entry(runtime, complaint["id"])
    assert entry.kind == "complaint" and entry.data["status"] == "open"


def test_an_unknown_contact_is_a_404_and_nothing_is_stored(client, rw_headers, runtime, store):
    _problem(client.post(f"{BASE}/{uuid.uuid4()}/interactions", json=CALL, headers=rw_headers), 404)
    assert _count(runtime, Interaction) == 0 and _count(runtime, TimelineEntry) == 0
    assert store.events("crm.interaction.recorded") == []


def _in(minutes: int) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


@pytest.mark.parametrize("body, fields", [
    ({"type": "call", "channel": "phone", "direction": "inbound"}, {"summary"}),
    ({**CALL, "summary": "x" * 2001, "outcome": "y" * 501}, {"summary", "outcome"}),
    ({**CALL, "summary": "   "}, {"summary"}),
    ({**CALL, "type": "letter", "channel": "pigeon", "direction": "sideways"}, {"type", "channel", "direction"}),
    ({"type": "meeting", "summary": "Lunch"}, {"channel", "direction"}),
    ({**COMPLAINT, "category": None}, {"category"}),
    ({**COMPLAINT, "category": "weather"}, {"category"}),
    ({**CALL, "category": "billing"}, {"category"}),
    ({**CALL, "status": "open"}, {"status"}),
    ({**CALL, "occurred_at": "2026-03-14T10:30:00"}, {"occurred_at"}),
    ({**CALL, "occurred_at": "0001-01-01T00:00:00+05:00"}, {"occurred_at"}),
    ({**CALL, "recorded_by": "someone-else"}, {"recorded_by"}),
])
def test_invalid_fields_are_named_in_a_422_and_nothing_is_stored(client, rw_headers, contact_id, runtime, store,
                                                                 body, fields):
    problem = _problem(client.post(f"{BASE}/{contact_id}/interactions", json=body, headers=rw_headers), 422)
    assert set(problem["errors"]) == fields
    assert _count(runtime, Interaction) == 0 and _count(runtime, TimelineEntry) == 0
    assert store.events("crm.interaction.recorded") == []


def test_an_interaction_in_the_future_is_refused_beyond_a_few_minutes_of_clock_skew(client, rw_headers, contact_id):
    problem = _problem(client.post(f"{BASE}/{contact_id}/interactions", json={**CALL, "occurred_at": _in(60)},
                                   headers=rw_headers), 422)
    assert set(problem["errors"]) == {"occurred_at"}
    _record(client, rw_headers, contact_id, occurred_at=_in(1))


def test_a_retry_with_the_same_idempotency_key_records_one_interaction(client, rw_headers, contact_id, runtime):
    headers = {**rw_headers, "Idempotency-Key": str(uuid.uuid4())}
    first = client.post(f"{BASE}/{contact_id}/interactions", json=CALL, headers=headers)
    again = client.post(f"{BASE}/{contact_id}/interactions", json=CALL, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert _count(runtime, Interaction) == 1 and _count(runtime, TimelineEntry) == 1


# -- reading --------------------------------------------------------------------------------------------------

def test_one_interaction_is_read_with_its_etag_and_only_under_its_own_contact(client, rw_headers, contact_id):
    made = _record(client, rw_headers, contact_id)
    other = _contact(client, rw_headers, "bob@example.com")
    response = client.get(f"{BASE}/{contact_id}/interactions/{made['id']}", headers=rw_headers)
    assert response.status_code == 200 and response.json == made and response.headers["ETag"] == 'W/"1"'
    _problem(client.get(f"{BASE}/{other}/interactions/{made['id']}", headers=rw_headers), 404)
    _problem(client.get(f"{BASE}/{contact_id}/interactions/{uuid.uuid4()}", headers=rw_headers), 404)
    _problem(client.get(f"{BASE}/{uuid.uuid4()}/interactions/{made['id']}", headers=rw_headers), 404)


def test_the_list_is_newest_first_by_occurred_at_and_pages_through_every_interaction(client, rw_headers, contact_id):
    start = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    # Recorded out of order, two at the same instant: the order is by occurred_at, ties by recording order.
    hours = [5, 1, 3, 3, 0, 4, 2]
    made = [_record(client, rw_headers, contact_id, occurred_at=(start + timedelta(hours=h)).isoformat())["id"]
            for h in hours]
    expected = [made[i] for i in sorted(range(len(hours)), key=lambda i: (hours[i], i), reverse=True)]
    seen, cursor = [], None
    while True:
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{BASE}/{contact_id}/interactions", query_string=query, headers=rw_headers).json
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    ascending = client.get(f"{BASE}/{contact_id}/interactions", query_string={"sort": "occurred_at"},
                           headers=rw_headers).json
    assert [item["id"] for item in ascending["items"]] == expected[::-1]


def test_the_list_filters_by_types_and_complaint_status(client, rw_headers, contact_id):
    call = _record(client, rw_headers, contact_id)["id"]
    note = _record(client, rw_headers, contact_id, {"type": "note", "summary": "VIP"})["id"]
    open_one = _record(client, rw_headers, contact_id, COMPLAINT)["id"]
    resolved = _record(client, rw_headers, contact_id, COMPLAINT)["id"]
    assert client.patch(f"{BASE}/{contact_id}/interactions/{resolved}", headers=rw_headers,
                        json={"status": "resolved", "resolution": "Refunded"}).status_code == 200

    def ids(**query):
        response = client.get(f"{BASE}/{contact_id}/interactions", query_string=query, headers=rw_headers)
        assert response.status_code == 200, response.json
        return {item["id"] for item in response.json["items"]}

    assert ids() == {call, note, open_one, resolved}
    assert ids(type=["call", "note"]) == {call, note}
    assert ids(type="complaint", status="open") == {open_one}
    assert ids(status="resolved") == {resolved}


def test_the_list_of_an_unknown_contact_is_a_404_and_of_a_quiet_one_empty(client, rw_headers, contact_id):
    _problem(client.get(f"{BASE}/{uuid.uuid4()}/interactions", headers=rw_headers), 404)
    assert client.get(f"{BASE}/{contact_id}/interactions", headers=rw_headers).json == {"items": [],
                                                                                       "next_cursor": None}


@pytest.mark.parametrize("query, field", [
    ({"type": "letter"}, "type"), ({"status": "pending"}, "status"), ({"sort": "summary"}, "sort"),
    ({"limit": 0}, "limit"), ({"cursor": "bm9wZQ"}, "cursor"),
])
def test_bad_list_arguments_are_a_422_naming_them(client, rw_headers, contact_id, query, field):
    problem = _problem(client.get(f"{BASE}/{contact_id}/interactions", query_string=query, headers=rw_headers), 422)
    assert field in problem["errors"]


# -- changing -------------------------------------------------------------------------------------------------

def test_resolving_a_complaint_records_when_and_by_whom_and_updates_its_timeline_entry(client, rw_headers,
                                                                                       contact_id, runtime):
    complaint = _record(client, rw_headers, contact_id, COMPLAINT)
    url = f"{BASE}/{contact_id}/interactions/{complaint['id']}"
    problem = _problem(client.patch(url, json={"status": "resolved"}, headers=rw_headers), 422)
    assert set(problem["errors"]) == {"resolution"}

    resolver = identity_headers("contacts:read", "contacts:write", key_id="support-lead")
    response = client.patch(url, json={"status": "resolved", "resolution": "Refunded the second charge"},
                            headers={**resolver, "If-Match": 'W/"1"'})
    assert response.status_code == 200, response.json
    body = response.json
    assert (body["status"], body["resolution"], body["resolved_by"], body["version"]) == (
        "resolved", "Refunded the second charge", "support-lead", 2)
    assert body["resolved_at"] and body["recorded_by"] == "test-key" and response.headers["ETag"] == 'W/"2"'
    entry = _entry(runtime, complaint["id"])
    assert entry.data["status"] == "resolved" and entry.data["resolved_at"]
    assert entry.summary.startswith("Complaint about billing, resolved")

    reopened = client.patch(url, json={"status": "open"}, headers=rw_headers)
    assert _problem(reopened, 409)["current_status"] == "resolved"
    corrected = client.patch(url, json={"resolution": "Refunded the second charge in full"}, headers=rw_headers)
    assert corrected.json["resolution"].endswith("in full") and corrected.json["resolved_by"] == "support-lead"


def test_correcting_a_summary_bumps_the_version_and_rewrites_the_timeline_line(client, rw_headers, contact_id,
                                                                             runtime):
    call = _record(client, rw_headers, contact_id)
    url = f"{BASE}/{contact_id}/interactions/{call['id']}"
    response = client.patch(url, json={"summary": "Asked about the April invoice", "outcome": None},
                            headers=rw_headers)
    assert response.status_code == 200 and response.json["version"] == 2 and response.json["outcome"] is None
    assert _entry(runtime, call["id"]).summary == "Call (inbound, phone): Asked about the April invoice"
    unchanged = client.patch(url, json={"summary": "Asked about the April invoice"}, headers=rw_headers)
    assert unchanged.json["version"] == 2, "an unchanged PATCH changes nothing"


@pytest.mark.parametrize("body, fields", [
    ({"status": "resolved", "resolution": "Done"}, {"status", "resolution"}),
    ({"summary": ""}, {"summary"}),
    ({"summary": None}, {"summary"}),
    ({"type": "complaint"}, {"type"}),
])
def test_a_change_an_interaction_cannot_take_is_a_422_naming_it(client, rw_headers, contact_id, body, fields):
    call = _record(client, rw_headers, contact_id)
    url = f"{BASE}/{contact_id}/interactions/{call['id']}"
    assert set(_problem(client.patch(url, json=body, headers=rw_headers), 422)["errors"]) == fields
    assert client.get(url, headers=rw_headers).json == call


def test_a_stale_if_match_is_a_412_and_changes_nothing(client, rw_headers, contact_id):
    call = _record(client, rw_headers, contact_id)
    url = f"{BASE}/{contact_id}/interactions/{call['id']}"
    assert client.patch(url, json={"summary": "first"}, headers={**rw_headers, "If-Match": 'W/"1"'}).status_code == 200
    problem = _problem(client.patch(url, json={"summary": "second"}, headers={**rw_headers, "If-Match": 'W/"1"'}), 412)
    assert problem["current_version"] == 2
    assert client.get(url, headers=rw_headers).json["summary"] == "first"


def test_patching_an_unknown_interaction_is_a_404(client, rw_headers, contact_id):
    _problem(client.patch(f"{BASE}/{contact_id}/interactions/{uuid.uuid4()}", json={"summary": "x"},
                          headers=rw_headers), 404)


# -- scopes ---------------------------------------------------------------------------------------------------

def test_reading_needs_contacts_read_and_writing_contacts_write(client, rw_headers, contact_id, runtime):
    made = _record(client, rw_headers, contact_id)
    one, many = f"{BASE}/{contact_id}/interactions/{made['id']}", f"{BASE}/{contact_id}/interactions"
    read_only, write_only = identity_headers("contacts:read"), identity_headers("contacts:write")
    _problem(client.post(many, json=CALL, headers=read_only), 403)
    _problem(client.patch(one, json={"summary": "x"}, headers=read_only), 403)
    _problem(client.get(many, headers=write_only), 403)
    _problem(client.get(one, headers=write_only), 403)
    _problem(client.get(many, headers=identity_headers("leads:read")), 403)
    assert _count(runtime, Interaction) == 1
    for headers in (identity_headers("contacts:*"), identity_headers("admin")):
        assert client.get(many, headers=headers).status_code == 200


def test_a_write_only_key_gets_a_receipt_not_the_interaction(client, contact_id):
    writer = identity_headers("contacts:write")
    made = client.post(f"{BASE}/{contact_id}/interactions", json=COMPLAINT, headers=writer)
    assert made.status_code == 201 and made.json == {"id": made.json["id"], "version": 1}
    url = f"{BASE}/{contact_id}/interactions/{made.json['id']}"
    resolved = client.patch(url, json={"status": "resolved", "resolution": "Refunded"}, headers=writer)
    assert resolved.status_code == 200 and resolved.json == {"id": made.json["id"], "version": 2}
    refused = _problem(client.patch(url, json={"status": "open"}, headers=writer), 409)
    assert "resolved" not in str(refused)
