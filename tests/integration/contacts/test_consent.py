"""Consent per channel and purpose on the real PostgreSQL: history, current state, events, timeline, errors."""
from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from services.contacts.models import ConsentChange, Contact, TimelineEntry
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

BASE = "/api/v1/contacts"
T0 = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)
T1 = T0 + timedelta(days=1)
T2 = T0 + timedelta(days=2)


def _contact(client, headers, email="ann@example.com") -> dict:
    response = client.post(BASE, json={"email": email}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def _change(status: str, at: datetime | None = T0, channel="email", purpose="marketing", **extra) -> dict:
    change = {"channel": channel, "purpose": purpose, "status": status, "source": "web-form", **extra}
    if at is not None:
        change["occurred_at"] = at.isoformat()
    if status == "granted":
        change.setdefault("text_version", "v3")
    return change


def _record(client, headers, contact_id, *changes, status=201, **kw):
    response = client.post(f"{BASE}/{contact_id}/consents", json={"changes": list(changes)}, headers=headers, **kw)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.json


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.json


def _history(runtime, contact_id) -> list[ConsentChange]:
    with runtime.session_factory() as s:
        return list(s.scalars(select(ConsentChange).where(ConsentChange.contact_id == uuid.UUID(contact_id))
                              .order_by(ConsentChange.seq)))


def _timeline(runtime, contact_id) -> list[TimelineEntry]:
    with runtime.session_factory() as s:
        return list(s.scalars(select(TimelineEntry).where(TimelineEntry.contact_id == uuid.UUID(contact_id))
                              .order_by(TimelineEntry.seq)))


def _stored_contact(runtime, contact_id) -> Contact:
    with runtime.session_factory() as s:
        return s.scalar(select(Contact).where(Contact.id == uuid.UUID(contact_id)))


# -- recording --------------------------------------------------------------------------------------------

def test_a_grant_becomes_current_is_kept_in_the_history_announced_and_on_the_timeline(client, rw_headers, store,
                                                                                      runtime):
    contact = _contact(client, rw_headers)
    body = _record(client, rw_headers, contact["id"], _change("granted", T0))
    expected_state = {"email:marketing": {"status": "granted", "occurred_at": "2026-03-01T09:30:00+00:00",
                                          "source": "web-form", "text_version": "v3"}}
    assert body["consents"] == expected_state and body["version"] == 2
    [change] = body["changes"]
    assert (change["status"], change["current"], change["recorded_by"]) == ("granted", True, "test-key")
    shown = client.get(f"{BASE}/{contact['id']}", headers=rw_headers)
    assert shown.json["consents"] == expected_state and shown.headers["ETag"] == 'W/"2"'
    [event] = store.events("crm.consent.changed")
    assert event["subject"] == contact["id"]
    assert event["data"] == {"contact_id": contact["id"], "channel": "email", "purpose": "marketing",
                             "status": "granted", "occurred_at": "2026-03-01T09:30:00+00:00", "source": "web-form",
                             "text_version": "v3", "current": True}
    [entry] = _timeline(runtime, contact["id"])
    assert (str(entry.id), entry.kind, entry.occurred_at, entry.source) == (change["id"], "consent", T0, "contacts")
    assert entry.data["status"] == "granted" and "email marketing consent granted" in entry.summary


def test_a_withdrawal_recorded_first_wins_over_an_older_grant_recorded_later(client, rw_headers, store, runtime):
    contact = _contact(client, rw_headers)
    first = _record(client, rw_headers, contact["id"], _change("withdrawn", T2, source="call-center"))
    second = _record(client, rw_headers, contact["id"], _change("granted", T1))
    assert second["consents"]["email:marketing"]["status"] == "withdrawn"
    assert second["consents"]["email:marketing"]["source"] == "call-center"
    assert [first["version"], second["version"]] == [2, 2]  # the late grant changed nothing current
    assert second["changes"][0]["current"] is False
    assert [(c.status, c.current) for c in _history(runtime, contact["id"])] == [("withdrawn", True), ("granted", False)]
    assert [e["data"]["current"] for e in store.events("crm.consent.changed")] == [True, False]
    assert len(_timeline(runtime, contact["id"])) == 2
    assert _stored_contact(runtime, contact["id"]).consents["email:marketing"]["status"] == "withdrawn"


def test_a_newer_grant_replaces_an_older_withdrawal(client, rw_headers):
    contact = _contact(client, rw_headers)
    _record(client, rw_headers, contact["id"], _change("withdrawn", T1))
    body = _record(client, rw_headers, contact["id"], _change("granted", T2, text_version="v4"))
    assert body["consents"]["email:marketing"]["status"] == "granted" and body["version"] == 3


@pytest.mark.parametrize("order", [("granted", "withdrawn"), ("withdrawn", "granted")])
def test_at_equal_times_a_withdrawal_wins_in_either_order(client, rw_headers, runtime, order):
    contact = _contact(client, rw_headers)
    for status in order:
        _record(client, rw_headers, contact["id"], _change(status, T1))
    assert _stored_contact(runtime, contact["id"]).consents["email:marketing"]["status"] == "withdrawn"
    assert len(_history(runtime, contact["id"])) == 2


def test_several_changes_in_one_body_apply_in_order_and_bump_the_version_once(client, rw_headers, store):
    contact = _contact(client, rw_headers)
    body = _record(client, rw_headers, contact["id"],
                   _change("granted", T0), _change("withdrawn", T1), _change("granted", T0, channel="sms"),
                   _change("granted", T0, purpose="service", channel="post"))
    assert {key: value["status"] for key, value in body["consents"].items()} == {
        "email:marketing": "withdrawn", "sms:marketing": "granted", "post:service": "granted"}
    assert [c["current"] for c in body["changes"]] == [True, True, True, True]
    assert body["version"] == 2
    assert len(store.events("crm.consent.changed")) == 4


def test_occurred_at_defaults_to_now(client, rw_headers):
    contact = _contact(client, rw_headers)
    before = datetime.now(timezone.utc)
    body = _record(client, rw_headers, contact["id"], _change("withdrawn", None))
    at = datetime.fromisoformat(body["changes"][0]["occurred_at"])
    assert before <= at <= datetime.now(timezone.utc)


def test_concurrent_changes_of_one_person_end_with_the_newest(app, rw_headers, runtime):
    contact = _contact(app.test_client(), rw_headers)
    times = [T0 + timedelta(minutes=minute) for minute in (5, 1, 4, 2, 6, 3)]
    barrier = threading.Barrier(len(times))
    codes = []

    def record(index, at):
        barrier.wait()
        status = "granted" if index % 2 else "withdrawn"
        response = app.test_client().post(f"{BASE}/{contact['id']}/consents",
                                          json={"changes": [_change(status, at)]}, headers=rw_headers)
        codes.append(response.status_code)

    threads = [threading.Thread(target=record, args=(i, at)) for i, at in enumerate(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert codes == [201] * len(times)
    stored = _stored_contact(runtime, contact["id"])
    assert stored.consents["email:marketing"]["occurred_at"] == max(times).isoformat()
    assert stored.consents["email:marketing"]["status"] == "withdrawn"  # index 4 (minute 6) is even
    history = _history(runtime, contact["id"])
    assert len(history) == len(times)
    assert stored.version == 1 + sum(change.current for change in history)


# -- all or nothing, and input errors ---------------------------------------------------------------------

def test_one_invalid_change_refuses_the_whole_body_naming_the_field(client, rw_headers, store, runtime):
    contact = _contact(client, rw_headers)
    response = client.post(f"{BASE}/{contact['id']}/consents", headers=rw_headers,
                           json={"changes": [_change("granted", T0), _change("granted", T1, text_version=None)]})
    problem = _problem(response, 422)
    assert set(problem["errors"]["changes"]["1"]) == {"text_version"}
    assert _history(runtime, contact["id"]) == [] and store.events("crm.consent.changed") == []
    assert _timeline(runtime, contact["id"]) == []
    assert _stored_contact(runtime, contact["id"]).version == 1


@pytest.mark.parametrize("change, field", [
    ({"channel": "fax"}, "channel"),
    ({"purpose": "sales"}, "purpose"),
    ({"status": "maybe"}, "status"),
    ({"source": "x" * 101}, "source"),
    ({"source": "  "}, "source"),
    ({"text_version": "v" * 51}, "text_version"),
    ({"occurred_at": "2026-03-01T09:30:00"}, "occurred_at"),  # no offset
    ({"occurred_at": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()}, "occurred_at"),
    ({"colour": "red"}, "colour"),
])
def test_invalid_fields_are_a_422_naming_them(client, rw_headers, runtime, change, field):
    contact = _contact(client, rw_headers)
    response = client.post(f"{BASE}/{contact['id']}/consents", headers=rw_headers,
                           json={"changes": [{**_change("granted", T0), **change}]})
    assert field in _problem(response, 422)["errors"]["changes"]["0"]
    assert _history(runtime, contact["id"]) == []


@pytest.mark.parametrize("body", [{"changes": []}, {}, {"changes": [_change("withdrawn")] * 21}])
def test_a_body_without_changes_or_with_too_many_is_a_422_naming_changes(client, rw_headers, body):
    contact = _contact(client, rw_headers)
    response = client.post(f"{BASE}/{contact['id']}/consents", headers=rw_headers, json=body)
    assert "changes" in _problem(response, 422)["errors"]


def test_an_unknown_contact_is_a_404_for_recording_and_reading(client, rw_headers):
    unknown = uuid.uuid4()
    _problem(client.post(f"{BASE}/{unknown}/consents", json={"changes": [_change("withdrawn")]},
                         headers=rw_headers), 404)
    _problem(client.get(f"{BASE}/{unknown}/consents", headers=rw_headers), 404)


def test_a_replayed_idempotency_key_records_nothing_new(client, rw_headers, runtime, store):
    contact = _contact(client, rw_headers)
    headers = {**rw_headers, "Idempotency-Key": "consent-1"}
    first = client.post(f"{BASE}/{contact['id']}/consents", json={"changes": [_change("granted")]}, headers=headers)
    again = client.post(f"{BASE}/{contact['id']}/consents", json={"changes": [_change("granted")]}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and again.json == first.json
    assert len(_history(runtime, contact["id"])) == 1 and len(store.events("crm.consent.changed")) == 1
    other = client.post(f"{BASE}/{contact['id']}/consents", json={"changes": [_change("withdrawn")]}, headers=headers)
    assert "Idempotency-Key" in _problem(other, 422)["errors"]


# -- the history ------------------------------------------------------------------------------------------

def test_the_history_pages_most_recently_recorded_first_and_filters(client, rw_headers):
    contact = _contact(client, rw_headers)
    _record(client, rw_headers, contact["id"], _change("granted", T0), _change("granted", T0, channel="sms"))
    _record(client, rw_headers, contact["id"], _change("withdrawn", T1), _change("granted", T1, purpose="service"))
    url = f"{BASE}/{contact['id']}/consents"
    first = client.get(url, query_string={"limit": 3}, headers=rw_headers).json
    rest = client.get(url, query_string={"limit": 3, "cursor": first["next_cursor"]}, headers=rw_headers).json
    seen = [(c["channel"], c["purpose"], c["status"]) for c in first["items"] + rest["items"]]
    assert seen == [("email", "service", "granted"), ("email", "marketing", "withdrawn"),
                    ("sms", "marketing", "granted"), ("email", "marketing", "granted")]
    assert rest["next_cursor"] is None
    email_marketing = client.get(url, query_string={"channel": "email", "purpose": "marketing"}, headers=rw_headers)
    assert [c["status"] for c in email_marketing.json["items"]] == ["withdrawn", "granted"]
    service = client.get(url, query_string={"purpose": "service"}, headers=rw_headers).json["items"]
    assert [(c["channel"], c["purpose"]) for c in service] == [("email", "service")]


def test_a_contact_without_consents_has_an_empty_history(client, rw_headers):
    contact = _contact(client, rw_headers)
    assert client.get(f"{BASE}/{contact['id']}/consents", headers=rw_headers).json == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("query, field", [({"channel": "fax"}, "channel"), ({"purpose": "x"}, "purpose"),
                                          ({"limit": 0}, "limit"), ({"cursor": "nope"}, "cursor")])
def test_bad_history_arguments_are_a_422_naming_them(client, rw_headers, query, field):
    contact = _contact(client, rw_headers)
    response = client.get(f"{BASE}/{contact['id']}/consents", query_string=query, headers=rw_headers)
    assert field in _problem(response, 422)["errors"]


# -- scopes -----------------------------------------------------------------------------------------------

def test_recording_needs_contacts_write_and_reading_needs_contacts_read(client, rw_headers, runtime):
    contact = _contact(client, rw_headers)
    url = f"{BASE}/{contact['id']}/consents"
    _problem(client.post(url, json={"changes": [_change("granted")]}, headers=identity_headers("contacts:read")), 403)
    _problem(client.get(url, headers=identity_headers("contacts:write")), 403)
    partner = identity_headers("contacts:read", "contacts:write", kind="partner", partner_id=str(uuid.uuid4()))
    _problem(client.get(url, headers=partner), 403)
    assert _history(runtime, contact["id"]) == []
    for headers in (identity_headers("contacts:*"), identity_headers("admin")):
        assert client.post(url, json={"changes": [_change("granted")]}, headers=headers).status_code == 201
        assert client.get(url, headers=headers).status_code == 200


def test_a_key_that_may_only_write_gets_a_receipt_not_the_persons_consents(client, rw_headers):
    contact = _contact(client, rw_headers)
    _record(client, rw_headers, contact["id"], _change("granted", T0, channel="sms"))
    body = _record(client, identity_headers("contacts:write"), contact["id"], _change("withdrawn", T1))
    assert set(body) == {"contact_id", "version", "changes"}
    assert [set(change) for change in body["changes"]] == [{"id"}]


# -- the contact list's consent filter --------------------------------------------------------------------

def test_the_contact_list_filters_by_a_currently_granted_consent(client, rw_headers):
    ann, bob, cem = (_contact(client, rw_headers, f"{name}@example.com") for name in ("ann", "bob", "cem"))
    _record(client, rw_headers, ann["id"], _change("granted", T0))
    _record(client, rw_headers, bob["id"], _change("granted", T0), _change("withdrawn", T1))
    _record(client, rw_headers, cem["id"], _change("granted", T0, channel="sms"))
    listed = client.get(BASE, query_string={"consent": "email:marketing"}, headers=rw_headers).json["items"]
    assert [c["email"] for c in listed] == ["ann@example.com"]
    sms = client.get(BASE, query_string={"consent": "sms:marketing"}, headers=rw_headers).json["items"]
    assert [c["email"] for c in sms] == ["cem@example.com"]
    refused = client.get(BASE, query_string={"consent": "fax:marketing"}, headers=rw_headers)
    assert "consent" in _problem(refused, 422)["errors"]
