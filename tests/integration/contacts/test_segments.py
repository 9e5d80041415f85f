"""Saved segments on the real PostgreSQL: the API, members and counts over a mixed data set, membership refreshes.

The data set has tags, custom attributes, consent, purchases in two currencies and measures from a snapshot
(a completed refresh with its customer_analytics rows, written directly), so every kind of field is read by SQL.
"""
from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from sqlalchemy import select, update

from services.common.db import utcnow
from services.contacts import purchase_facts
from services.contacts.models import (
    AnalyticsRefresh,
    AttributeDefinition,
    Contact,
    CustomerAnalytics,
    Segment,
    SegmentMember,
)
from services.contacts.segments.membership import refresh_memberships
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

BASE = "/api/v1/segments"
READ = identity_headers("contacts:read")
WRITE_ONLY = identity_headers("contacts:write")


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.json


def _contact(client, headers, email: str) -> uuid.UUID:
    response = client.post("/api/v1/contacts", json={"email": email}, headers=headers)
    assert response.status_code == 201, response.json
    return uuid.UUID(response.json["id"])


def _set(runtime, contact_id, **values) -> None:
    with runtime.session_factory() as s, s.begin():
        s.execute(update(Contact).where(Contact.id == contact_id).values(**values))


def _purchase(runtime, contact_id, amount: str, *, currency="EUR", days_ago: int, margin: str | None = None) -> None:
    purchase_facts.record_purchase(runtime.uow(), {
        "purchase_id": uuid.uuid4(), "contact_id": contact_id, "currency": currency, "amount": Decimal(amount),
        "margin": None if margin is None else Decimal(margin), "occurred_at": utcnow() - timedelta(days=days_ago)})


def _snapshot(runtime, measures: dict, *, status="completed", currency="EUR") -> uuid.UUID:
    """A refresh of `currency` with one customer_analytics row per contact in `measures` (contact -> columns)."""
    refresh_id = uuid.uuid4()
    with runtime.session_factory() as s, s.begin():
        s.add(AnalyticsRefresh(id=refresh_id, status=status, trigger="cli", currency=currency, as_of=utcnow(),
                               parameters={}, requested_by="test"))
        s.flush()
        for contact_id, columns in measures.items():
            s.add(CustomerAnalytics(refresh_id=refresh_id, contact_id=contact_id, **columns))
    return refresh_id


@pytest.fixture
def people(client, rw_headers, runtime):
    """Four contacts: ann (A, vip, gold, granted, 2 EUR purchases), bob (C, silver, withdrawn, 1 old purchase),
    cy (a prospect), dee (a USD buyer only)."""
    with runtime.session_factory() as s, s.begin():
        s.add_all([AttributeDefinition(name="tier", type="enum", label="Tier", options=["gold", "silver"]),
                   AttributeDefinition(name="score", type="number", label="Score"),
                   AttributeDefinition(name="since", type="date", label="Since")])
    ids = SimpleNamespace(**{name: _contact(client, rw_headers, f"{name}@example.com")
                             for name in ("ann", "bob", "cy", "dee")})
    granted = {"status": "granted", "occurred_at": "2026-01-01T00:00:00+00:00", "source": "web", "text_version": "1"}
    _set(runtime, ids.ann, tags=["vip"], attributes={"tier": "gold", "score": "19.5", "since": "2020-05-01"},
         consents={"email:marketing": granted}, first_name="Ann")
    _set(runtime, ids.bob, attributes={"tier": "silver", "score": "3"},
         consents={"email:marketing": {**granted, "status": "withdrawn"}})
    _purchase(runtime, ids.ann, "120.00", days_ago=10, margin="30")
    _purchase(runtime, ids.ann, "80.00", days_ago=40, margin="20")
    _purchase(runtime, ids.bob, "20.00", days_ago=200)
    _purchase(runtime, ids.dee, "1000.00", currency="USD", days_ago=5)
    _snapshot(runtime, {ids.ann: {"abc_class": "A", "stage": "loyal", "clv_units": 5_000_000, "rfm_segment": "champions"},
                        ids.bob: {"abc_class": "C", "stage": "new", "clv_units": 100_000},
                        ids.cy: {"stage": "prospect"}, ids.dee: {"stage": "new"}})
    # A newer refresh that failed: its figures are no one's measures.
    _snapshot(runtime, {ids.ann: {"abc_class": "C"}, ids.cy: {"abc_class": "A"}}, status="failed")
    return ids


def _names(ids, found) -> set[str]:
    by_id = {str(value): name for name, value in vars(ids).items()}
    return {by_id[str(item)] for item in found}


def _preview(client, rules, **extra):
    response = client.post(f"{BASE}/preview", json={"rules": rules, **extra}, headers=READ)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


def _c(field, op, value):
    return {"field": field, "op": op, "value": value}


# -- members over every kind of field ------------------------------------------------------------------------------

@pytest.mark.parametrize(("rules", "expected"), [
    ({"all": [_c("abc_class", "eq", "A"), _c("last_purchase_at", "after", "-90d")]}, {"ann"}),
    ({"any": [_c("tags", "has", "vip"), _c("attributes.tier", "eq", "silver")]}, {"ann", "bob"}),
    ({"all": [_c("tags", "has_none", ["vip"])]}, {"bob", "cy", "dee"}),
    ({"all": [_c("consent.email.marketing", "ne", "granted")]}, {"bob", "cy", "dee"}),
    ({"all": [_c("consent.email.marketing", "exists", True)]}, {"ann", "bob"}),
    ({"all": [_c("total_spent", "gte", "200")]}, {"ann"}),  # dee's USD purchase is not EUR spend
    ({"all": [_c("purchase_count", "eq", 0)]}, {"cy", "dee"}),
    ({"not": {"all": [_c("abc_class", "in", ["A", "B"])]}}, {"bob", "cy", "dee"}),  # no class is "not A or B"
    ({"all": [_c("last_purchase_at", "before", "-90d")]}, {"bob"}),
    ({"all": [_c("last_purchase_at", "between", ["-60d", "-1d"])]}, {"ann", "dee"}),
    ({"all": [_c("attributes.score", "gt", "10")]}, {"ann"}),
    ({"all": [_c("attributes.since", "before", "2021-01-01")]}, {"ann"}),
    ({"all": [_c("clv", "gt", "10.0001")]}, {"ann"}),
    ({"all": [_c("clv", "lte", "10")]}, {"bob"}),
    ({"all": [_c("stage", "in", ["new", "prospect"])]}, {"bob", "cy", "dee"}),
    ({"all": [_c("rfm_segment", "exists", False), _c("email_domain", "eq", "EXAMPLE.com")]}, {"bob", "cy", "dee"}),
    ({"all": [_c("first_name", "starts_with", "an")]}, {"ann"}),
    ({"all": [_c("created_at", "after", "-1d")]}, {"ann", "bob", "cy", "dee"}),
    ({"all": []}, {"ann", "bob", "cy", "dee"}),
    ({"any": []}, set()),
])
def test_members_are_the_contacts_the_rules_match(client, people, rules, expected):
    body = _preview(client, rules)
    assert _names(people, [item["id"] for item in body["items"]]) == expected
    assert body["count"] == len(expected)


def test_a_member_shows_its_measures_from_the_current_snapshot(client, people):
    [ann] = _preview(client, {"all": [_c("email", "eq", "Ann@Example.com")]})["items"]
    assert ann["id"] == str(people.ann)
    assert (ann["email"], ann["first_name"], ann["abc_class"], ann["stage"], ann["clv"], ann["rfm_segment"]) == (
        "ann@example.com", "Ann", "A", "loyal", "500.0000", "champions")


def test_a_currency_without_a_snapshot_has_no_measures(client, people):
    assert _preview(client, {"all": [_c("stage", "exists", True)]}, currency="USD")["count"] == 0
    body = _preview(client, {"all": [_c("total_spent", "eq", "1000")]}, currency="USD")
    assert _names(people, [item["id"] for item in body["items"]]) == {"dee"}


# -- the API ------------------------------------------------------------------------------------------------------

def _create(client, headers, name="Best customers", rules=None, status=201, **extra):
    rules = rules or {"all": [_c("abc_class", "eq", "A")]}
    response = client.post(BASE, json={"name": name, "rules": rules, **extra}, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    return response


def test_a_segment_is_saved_read_listed_changed_and_deleted(client, rw_headers, people):
    created = _create(client, rw_headers, description="Class A", rules={"all": [_c("total_spent", "gte", "100.5")]})
    body = created.json
    assert created.headers["ETag"] == 'W/"1"' and created.headers["Location"] == f"{BASE}/{body['id']}"
    assert (body["name"], body["currency"], body["member_count"], body["created_by"], body["version"]) == (
        "Best customers", "EUR", None, "test-key", 1)
    assert body["rules"] == {"all": [_c("total_spent", "gte", "100.5")]}
    assert client.get(f"{BASE}/{body['id']}", headers=READ).json == body
    assert [item["id"] for item in client.get(BASE, headers=READ).json["items"]] == [body["id"]]

    count = client.get(f"{BASE}/{body['id']}/count", headers=READ).json
    assert (count["count"], count["member_count"]) == (1, None)
    members = client.get(f"{BASE}/{body['id']}/members", headers=READ).json
    assert [item["id"] for item in members["items"]] == [str(people.ann)]

    changed = client.patch(f"{BASE}/{body['id']}", json={"rules": {"any": [_c("tags", "has", "VIP")]}},
                           headers={**rw_headers, "If-Match": 'W/"1"'})
    assert changed.status_code == 200, changed.json
    assert changed.json["version"] == 2 and changed.json["rules"] == {"any": [_c("tags", "has", "vip")]}
    stale = client.patch(f"{BASE}/{body['id']}", json={"name": "Other"}, headers={**rw_headers, "If-Match": 'W/"1"'})
    _problem(stale, 412)

    assert client.delete(f"{BASE}/{body['id']}", headers=rw_headers).status_code == 204
    _problem(client.get(f"{BASE}/{body['id']}", headers=READ), 404)


def test_members_are_paged_in_contact_order(client, rw_headers, people):
    segment = _create(client, rw_headers, rules={"all": []}).json
    first = client.get(f"{BASE}/{segment['id']}/members?limit=3", headers=READ).json
    second = client.get(f"{BASE}/{segment['id']}/members?limit=3&cursor={first['next_cursor']}", headers=READ).json
    assert [item["id"] for item in first["items"] + second["items"]] == [str(i) for i in
                                                                          (people.ann, people.bob, people.cy, people.dee)]
    assert second["next_cursor"] is None


def test_a_name_is_unique(client, rw_headers, people):
    first = _create(client, rw_headers).json
    problem = _problem(_create(client, rw_headers, status=409), 409)
    assert problem["existing_segment_id"] == first["id"]
    other = _create(client, rw_headers, name="Other").json
    _problem(client.patch(f"{BASE}/{other['id']}", json={"name": "Best customers"}, headers=rw_headers), 409)


def test_an_idempotency_key_replays_the_first_answer(client, rw_headers, people):
    headers = {**rw_headers, "Idempotency-Key": "segment-1"}
    first, again = _create(client, headers), _create(client, headers)
    assert again.json == first.json
    with client.application.extensions["crm.runtime"].session_factory() as s:
        assert len(s.scalars(select(Segment)).all()) == 1


@pytest.mark.parametrize(("rules", "path"), [
    ({"all": [_c("abc_class", "gt", "A")]}, "rules.all.0.op"),
    ({"all": [_c("colour", "eq", "red")]}, "rules.all.0.field"),
    ({"all": [_c("attributes.unknown", "eq", "x")]}, "rules.all.0.field"),
    ({"all": [_c("attributes.tier", "eq", "bronze")]}, "rules.all.0.value"),
    ({"any": [{"not": _c("clv", "gt", 12.5)}]}, "rules.any.0.not.value"),
    ({"all": [_c("last_purchase_at", "before", "ninety days ago")]}, "rules.all.0.value"),
    ({"some": []}, "rules"),
])
def test_a_mistake_is_a_422_naming_its_path(client, rw_headers, people, rules, path):
    problem = _problem(_create(client, rw_headers, rules=rules, status=422), 422)
    assert path in problem["errors"], problem
    _problem(client.post(f"{BASE}/preview", json={"rules": rules}, headers=READ), 422)


def test_reading_needs_contacts_read_and_writing_contacts_write(client, rw_headers, people):
    _problem(_create(client, READ, status=403), 403)
    receipt = _create(client, WRITE_ONLY).json
    assert set(receipt) == {"id", "version"}
    segment_id = receipt["id"]
    _problem(client.patch(f"{BASE}/{segment_id}", json={"name": "x"}, headers=READ), 403)
    _problem(client.delete(f"{BASE}/{segment_id}", headers=READ), 403)
    for path in (BASE, f"{BASE}/{segment_id}", f"{BASE}/{segment_id}/members", f"{BASE}/{segment_id}/count"):
        _problem(client.get(path, headers=WRITE_ONLY), 403)
        assert client.get(path, headers=READ).status_code == 200


# -- membership refreshes -----------------------------------------------------------------------------------------

def _finish(runtime, refresh_id) -> None:
    with runtime.session_factory() as s, s.begin():
        s.execute(update(AnalyticsRefresh).where(AnalyticsRefresh.id == refresh_id).values(status="completed"))


def _refresh(runtime, refresh_id, currency="EUR") -> dict:
    uow = runtime.uow()
    with uow:
        refresh = uow.session.scalar(select(AnalyticsRefresh).where(AnalyticsRefresh.id == refresh_id))
        outcome = refresh_memberships(uow, refresh, utcnow())
        uow.commit()
    return outcome


def _membership_events(store) -> list[tuple[str, str, str]]:
    return sorted((event["type"], event["data"]["segment_id"], event["data"]["contact_id"])
                  for kind in ("crm.segment.entered", "crm.segment.left") for event in store.events(kind))


def _members(runtime, segment_id) -> set[uuid.UUID]:
    with runtime.session_factory() as s:
        return set(s.scalars(select(SegmentMember.contact_id).where(SegmentMember.segment_id == uuid.UUID(segment_id))))


def test_a_refresh_announces_exactly_who_entered_and_who_left(client, rw_headers, runtime, store, people):
    best = _create(client, rw_headers, name="Best", rules={"all": [_c("abc_class", "eq", "A")]}).json["id"]
    vip = _create(client, rw_headers, name="VIP", rules={"all": [_c("tags", "has", "vip")]}).json["id"]
    _create(client, rw_headers, name="Dollars", rules={"all": []}, currency="USD")
    refresh_id = _snapshot(runtime, {people.ann: {"abc_class": "A"}, people.bob: {"abc_class": "A"}}, status="running")

    outcome = _refresh(runtime, refresh_id)
    assert outcome == {"Best": {"entered": 2, "left": 0, "members": 2}, "VIP": {"entered": 1, "left": 0, "members": 1}}
    entered = "crm.segment.entered"
    assert _membership_events(store) == sorted([(entered, best, str(people.ann)), (entered, best, str(people.bob)),
                                                (entered, vip, str(people.ann))])
    [event] = [e for e in store.events(entered) if e["data"]["segment_id"] == vip]
    assert (event["subject"], event["data"]["refresh_id"], event["source"]) == (
        str(people.ann), str(refresh_id), "/services/contacts")
    assert client.get(f"{BASE}/{best}", headers=READ).json["member_count"] == 2

    # The same data again: nothing changes, nothing is announced.
    before = len(store.events())
    assert _refresh(runtime, refresh_id) == outcome | {"Best": {"entered": 0, "left": 0, "members": 2},
                                                       "VIP": {"entered": 0, "left": 0, "members": 1}}
    assert len(store.events()) == before

    # Ann loses her tag and bob gains it; a new snapshot says bob is no longer class A.
    _set(runtime, people.ann, tags=[])
    _set(runtime, people.bob, tags=["vip"])
    _finish(runtime, refresh_id)
    later = _snapshot(runtime, {people.ann: {"abc_class": "A"}, people.bob: {"abc_class": "B"}}, status="running")
    assert _refresh(runtime, later) == {"Best": {"entered": 0, "left": 1, "members": 1},
                                        "VIP": {"entered": 1, "left": 1, "members": 1}}
    new_events = [json.dumps(e) for e in store.events()][before:]
    assert sorted((json.loads(e)["type"], json.loads(e)["data"]["segment_id"], json.loads(e)["data"]["contact_id"])
                  for e in new_events) == sorted([("crm.segment.left", best, str(people.bob)),
                                                  ("crm.segment.left", vip, str(people.ann)),
                                                  (entered, vip, str(people.bob))])
    assert _members(runtime, best) == {people.ann} and _members(runtime, vip) == {people.bob}


def test_changing_rules_announces_nothing_until_the_next_refresh(client, rw_headers, runtime, store, people):
    segment = _create(client, rw_headers, name="VIP", rules={"all": [_c("tags", "has", "vip")]}).json
    refresh_id = _snapshot(runtime, {}, status="running")
    _refresh(runtime, refresh_id)
    before = len(store.events())
    client.patch(f"{BASE}/{segment['id']}", json={"rules": {"all": [_c("attributes.tier", "eq", "silver")]}},
                 headers=rw_headers)
    assert len(store.events()) == before
    assert _refresh(runtime, refresh_id) == {"VIP": {"entered": 1, "left": 1, "members": 1}}


def test_merging_and_erasing_a_contact_drop_its_memberships(client, rw_headers, runtime, people):
    segment = _create(client, rw_headers, name="All", rules={"all": []}).json["id"]
    _refresh(runtime, _snapshot(runtime, {}, status="running"))
    merged = client.post("/api/v1/contacts/merges", json={"survivor_id": str(people.ann), "merged_id": str(people.bob)},
                         headers=identity_headers("contacts:read", "contacts:write", "contacts:merge"))
    assert merged.status_code in (200, 201), merged.get_data(as_text=True)
    assert merged.json["moved"]["segment_members"] == 1
    erasure = client.post(f"/api/v1/contacts/{people.cy}/erasure", json={},
                          headers=identity_headers("contacts:read", "contacts:write", "contacts:erase"))
    assert erasure.status_code in (200, 201, 202), erasure.get_data(as_text=True)
    assert _members(runtime, segment) == {people.ann, people.dee}


def test_the_analytics_refresh_brings_memberships_up_to_date(client, rw_headers, runtime, store, people):
    from services.contacts.analytics.refresh import RefreshRunner

    vip = _create(client, rw_headers, name="VIP", rules={"all": [_c("tags", "has", "vip")]}).json["id"]
    runner = RefreshRunner(runtime)

    def refresh():
        requested = runner.request(currency="EUR", parameters=None, as_of=None, trigger="cli", requested_by="test")
        done = runner.run_here(requested.id)
        assert (done.status, done.error) == ("completed", None)
        return str(done.id)

    first = refresh()
    [event] = store.events("crm.segment.entered")
    assert (event["data"]["segment_id"], event["data"]["contact_id"], event["data"]["refresh_id"]) == (
        vip, str(people.ann), first)
    refresh()
    assert len(store.events("crm.segment.entered")) == 1 and not store.events("crm.segment.left")
    assert client.get(f"{BASE}/{vip}", headers=READ).json["member_count"] == 1
