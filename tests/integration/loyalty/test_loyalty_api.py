"""The loyalty service on the real PostgreSQL: programs, members, purchases, the ledger and its errors."""
from __future__ import annotations

import uuid

import pytest
from crm_plugins import PointAward, hookimpl

from services.loyalty.models import IdempotencyRecord, LedgerEntry, Member, Purchase
from tests.integration.loyalty.support import (
    AT,
    admin,
    balance,
    count,
    credit,
    enrol,
    events,
    purchase_body,
    rw,
)
from services.common.identity import generate_keypair
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

DEFAULT_PROGRAM_ID = "5b0c3f52-8d3e-4a7e-9b61-6c0d1f2a9e01"


# --- programs -----------------------------------------------------------------------------------------------

def test_the_default_program_exists_after_migration(client):
    page = client.get("/api/v1/loyalty/programs", headers=rw()).json

    (program,) = page["items"]
    assert program["id"] == DEFAULT_PROGRAM_ID and program["code"] == "default" and program["is_default"]
    assert (program["currency"], program["points_per_unit"], program["auto_enrol"]) == ("EUR", "1", True)
    assert client.get(f"/api/v1/loyalty/programs/{DEFAULT_PROGRAM_ID}", headers=rw()).json == program


def test_a_program_is_created_and_changed_and_its_code_is_unique(client):
    body = {"code": "gold", "name": "Gold club", "currency": "CHF", "points_per_unit": "2.5"}
    created = client.post("/api/v1/loyalty/programs", headers=admin(), json=body)
    assert created.status_code == 201, created.text
    assert created.json["points_per_unit"] == "2.5" and created.json["auto_enrol"] is False
    assert not created.json["is_default"]

    again = client.post("/api/v1/loyalty/programs", headers=admin(), json={**body, "name": "Other"})
    assert again.status_code == 409

    changed = client.patch(f"/api/v1/loyalty/programs/{created.json['id']}", headers=admin(),
                           json={"points_per_unit": "3", "auto_enrol": True})
    assert changed.status_code == 200
    assert (changed.json["points_per_unit"], changed.json["auto_enrol"]) == ("3", True)
    bad = client.patch(f"/api/v1/loyalty/programs/{created.json['id']}", headers=admin(), json={"points_per_unit": 3})
    assert bad.status_code == 422 and list(bad.json["errors"]) == ["points_per_unit"]


# --- members ------------------------------------------------------------------------------------------------

def test_enrolling_a_contact_makes_a_member_and_a_second_enrolment_is_a_409(loyalty, client):
    contact_id = str(uuid.uuid4())
    member = enrol(client, contact_id)

    assert member["contact_id"] == contact_id and member["program_id"] == DEFAULT_PROGRAM_ID
    assert (member["balance"], member["lifetime_points"], member["tier"]) == (0, 0, None)
    again = client.post("/api/v1/loyalty/members", headers=rw(), json={"contact_id": contact_id})
    assert again.status_code == 409 and again.json["member_id"] == member["id"]
    assert count(loyalty, Member) == 1
    (event,) = events(loyalty, "crm.member.enrolled")
    assert event["data"] == {"member_id": member["id"], "contact_id": contact_id, "program_id": DEFAULT_PROGRAM_ID}


def test_one_contact_may_join_two_programs(client):
    contact_id = str(uuid.uuid4())
    gold = client.post("/api/v1/loyalty/programs", headers=admin(), json={
        "code": "gold", "name": "Gold", "currency": "EUR", "points_per_unit": "2"}).json
    enrol(client, contact_id)

    second = client.post("/api/v1/loyalty/members", headers=rw(), json={"contact_id": contact_id, "program_id": gold["id"]})

    assert second.status_code == 201
    listed = client.get(f"/api/v1/loyalty/members?contact_id={contact_id}", headers=rw()).json["items"]
    assert {m["program_id"] for m in listed} == {gold["id"], DEFAULT_PROGRAM_ID}


def test_enrolling_in_an_unknown_program_is_a_422_naming_program_id(loyalty, client):
    r = client.post("/api/v1/loyalty/members", headers=rw(), json={"contact_id": str(uuid.uuid4()),
                                                                   "program_id": str(uuid.uuid4())})

    assert r.status_code == 422 and list(r.json["errors"]) == ["program_id"]
    assert count(loyalty, Member) == 0


def test_a_member_shows_its_balance_and_lifetime_points(client):
    member = enrol(client)
    client.post("/api/v1/loyalty/purchases", headers=rw(), json=purchase_body(member["contact_id"], amount="120.00"))
    client.post(f"/api/v1/loyalty/members/{member['id']}/redemptions", headers=rw(), json={"points": 20})

    got = client.get(f"/api/v1/loyalty/members/{member['id']}", headers=rw()).json

    assert (got["balance"], got["lifetime_points"]) == (100, 120)


# --- purchases ----------------------------------------------------------------------------------------------

def test_a_purchase_earns_points_through_the_plugins_and_records_both_events(loyalty, client):
    member = enrol(client)

    r = client.post("/api/v1/loyalty/purchases", headers=rw(), json={
        "member_id": member["id"], "amount": "42.50", "currency": "EUR", "occurred_at": "2026-03-14T12:30:00+02:00",
        "external_id": "till-7/0001"})

    assert r.status_code == 201, r.text
    body = r.json
    assert (body["points"], body["balance_after"], body["amount"], body["currency"]) == (42, 42, "42.50", "EUR")
    assert body["occurred_at"] == "2026-03-14T10:30:00+00:00"
    assert body["factors"] == [{"plugin": "builtin.loyalty_points", "code": "base_points", "points": 42,
                                "reason": "42.5 EUR at 1 point(s) per EUR = 42 points (rounded down)"}]
    assert balance(client, member["id"]) == 42
    (recorded,) = events(loyalty, "crm.purchase.recorded")
    assert recorded["data"]["amount"] == "42.50" and recorded["data"]["external_id"] == "till-7/0001"
    assert recorded["data"]["purchase_id"] == body["id"] and recorded["subject"] == member["id"]
    (earned,) = events(loyalty, "crm.points.earned")
    assert earned["data"]["points"] == 42 and earned["data"]["balance"] == 42
    assert earned["data"]["purchase_id"] == body["id"] and earned["data"]["transaction_id"] == body["transaction_id"]
    assert earned["correlationid"] == r.headers["X-Request-ID"]


def test_the_transactions_list_shows_why_a_purchase_earned_its_points(loyalty, client):
    class DoubleWeekend:
        @hookimpl
        def crm_loyalty_points(self, purchase):
            return PointAward("weekend", 10, "bought on a Saturday")

    loyalty.extensions["crm.runtime"].plugins.register(DoubleWeekend(), name="weekend_bonus")
    member = enrol(client)
    client.post("/api/v1/loyalty/purchases", headers=rw(), json=purchase_body(member["contact_id"]))

    (entry,) = client.get(f"/api/v1/loyalty/members/{member['id']}/transactions", headers=rw()).json["items"]

    assert (entry["kind"], entry["points"], entry["balance_after"]) == ("earn", 52, 52)
    assert [(f["plugin"], f["code"], f["points"]) for f in entry["factors"]] == [
        ("builtin.loyalty_points", "base_points", 42), ("weekend_bonus", "weekend", 10)]
    assert all(f["reason"] for f in entry["factors"]) and entry["degraded"] == []


def test_a_failing_plugin_degrades_the_earn_but_the_purchase_is_recorded(loyalty, client):
    class Broken:
        @hookimpl
        def crm_loyalty_points(self, purchase, program):
            raise RuntimeError("tier service down")

    loyalty.extensions["crm.runtime"].plugins.register(Broken(), name="broken_tiers")

    r = client.post("/api/v1/loyalty/purchases", headers=rw(), json=purchase_body())

    assert r.status_code == 201 and r.json["points"] == 42
    (failure,) = r.json["degraded"]
    assert failure == {"plugin": "broken_tiers", "hook": "crm_loyalty_points", "code": "plugin_error"}
    assert "tier service down" not in r.get_data(as_text=True)  # the exception's text goes to the log only


def test_a_purchase_by_a_contact_who_is_not_a_member_enrols_them_when_the_program_auto_enrols(loyalty, client):
    contact_id = str(uuid.uuid4())

    r = client.post("/api/v1/loyalty/purchases", headers=rw(), json=purchase_body(contact_id))

    assert r.status_code == 201 and r.json["contact_id"] == contact_id
    member = client.get(f"/api/v1/loyalty/members/{r.json['member_id']}", headers=rw()).json
    assert member["enrolled_via"] == "purchase" and member["balance"] == 42
    assert len(events(loyalty, "crm.member.enrolled")) == 1


def test_without_auto_enrolment_a_purchase_by_a_non_member_is_a_422_and_nothing_is_stored(loyalty, client):
    client.patch(f"/api/v1/loyalty/programs/{DEFAULT_PROGRAM_ID}", headers=admin(), json={"auto_enrol": False})

    r = client.post("/api/v1/loyalty/purchases", headers=rw(), json=purchase_body())

    assert r.status_code == 422 and list(r.json["errors"]) == ["contact_id"]
    assert count(loyalty, Member) == count(loyalty, Purchase) == 0


def test_a_purchase_with_no_points_is_recorded_with_an_explained_zero_and_no_earned_event(loyalty, client):
    r = client.post("/api/v1/loyalty/purchases", headers=rw(), json=purchase_body(amount="0.99"))

    assert r.status_code == 201 and r.json["points"] == 0
    assert "= 0 points" in r.json["factors"][0]["reason"]
    assert len(events(loyalty, "crm.purchase.recorded")) == 1 and events(loyalty, "crm.points.earned") == []


@pytest.mark.parametrize("body, fields", [
    ({"amount": 42.5, "currency": "eur", "occurred_at": "2026-03-14T10:30:00"}, {"amount", "currency", "occurred_at"}),
    ({"amount": "-1.00", "currency": "EUR", "occurred_at": AT}, {"amount"}),
    ({"amount": "0", "currency": "EUR", "occurred_at": AT}, {"amount"}),
    ({"amount": "1.00001", "currency": "EUR", "occurred_at": AT}, {"amount"}),
    ({"currency": "EUR", "occurred_at": AT}, {"amount"}),
    ({"amount": "5.00", "currency": "EUR", "occurred_at": AT, "contact_id": None}, {"member_id", "contact_id"}),
    ({"amount": "5.00", "currency": "EUR", "occurred_at": AT, "points": 500}, {"points"}),
])
def test_an_invalid_purchase_is_a_422_naming_the_fields_and_nothing_is_stored(loyalty, client, body, fields):
    r = client.post("/api/v1/loyalty/purchases", headers=rw(), json={"contact_id": str(uuid.uuid4()), **body})

    assert r.status_code == 422
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert set(r.json["errors"]) == fields
    assert count(loyalty, Purchase) == count(loyalty, Member) == count(loyalty, LedgerEntry) == 0
    assert events(loyalty, "crm.purchase.recorded") == []


@pytest.mark.parametrize("changes, field", [
    ({"currency": "USD"}, "currency"),
    ({"member_id": str(uuid.uuid4())}, "member_id"),
    ({"program_id": str(uuid.uuid4())}, "program_id"),
])
def test_a_purchase_naming_unknown_or_mismatched_things_is_a_422_and_nothing_is_stored(loyalty, client, changes, field):
    r = client.post("/api/v1/loyalty/purchases", headers=rw(), json=purchase_body(**changes))

    assert r.status_code == 422 and list(r.json["errors"]) == [field]
    assert count(loyalty, Purchase) == count(loyalty, Member) == 0


def test_a_member_and_a_different_contact_in_one_purchase_is_a_422(client):
    member = enrol(client)

    r = client.post("/api/v1/loyalty/purchases", headers=rw(),
                    json=purchase_body(member_id=member["id"], contact_id=str(uuid.uuid4())))

    assert r.status_code == 422 and list(r.json["errors"]) == ["contact_id"]


# --- redemptions, adjustments, reversals ---------------------------------------------------------------------

def test_redeeming_spends_points_and_records_the_event(loyalty, client):
    member = enrol(client)
    credit(client, member["id"], 100)

    r = client.post(f"/api/v1/loyalty/members/{member['id']}/redemptions", headers=rw(),
                    json={"points": 30, "reason": "coffee voucher"})

    assert r.status_code == 201, r.text
    assert (r.json["kind"], r.json["points"], r.json["balance_after"]) == ("redeem", -30, 70)
    assert balance(client, member["id"]) == 70
    (event,) = events(loyalty, "crm.points.redeemed")
    assert (event["data"]["points"], event["data"]["balance"], event["data"]["reason"]) == (30, 70, "coffee voucher")


def test_redeeming_more_than_the_balance_is_a_409_and_changes_nothing(loyalty, client):
    member = enrol(client)
    credit(client, member["id"], 10)

    r = client.post(f"/api/v1/loyalty/members/{member['id']}/redemptions", headers=rw(), json={"points": 11})

    assert r.status_code == 409
    assert r.json["type"].endswith("/insufficient-points") and (r.json["balance"], r.json["requested"]) == (10, 11)
    assert balance(client, member["id"]) == 10 and events(loyalty, "crm.points.redeemed") == []


def test_a_deducting_adjustment_cannot_overdraw_either(client):
    member = enrol(client)
    credit(client, member["id"], 5)

    r = client.post(f"/api/v1/loyalty/members/{member['id']}/adjustments", headers=admin(),
                    json={"points": -6, "reason": "correction"})

    assert r.status_code == 409 and balance(client, member["id"]) == 5


def test_reversing_an_earn_takes_its_points_back_once(loyalty, client):
    member = enrol(client)
    earned = client.post("/api/v1/loyalty/purchases", headers=rw(), json=purchase_body(member["contact_id"])).json
    path = f"/api/v1/loyalty/members/{member['id']}/transactions/{earned['transaction_id']}/reversal"

    r = client.post(path, headers=admin(), json={"reason": "goods returned"})

    assert r.status_code == 201, r.text
    assert (r.json["kind"], r.json["points"], r.json["reverses_id"]) == ("reverse", -42, earned["transaction_id"])
    got = client.get(f"/api/v1/loyalty/members/{member['id']}", headers=rw()).json
    assert (got["balance"], got["lifetime_points"]) == (0, 0)
    assert client.post(path, headers=admin(), json={"reason": "again"}).status_code == 409
    reversal = f"/api/v1/loyalty/members/{member['id']}/transactions/{r.json['id']}/reversal"
    assert client.post(reversal, headers=admin(), json={"reason": "undo the undo"}).status_code == 409
    (event,) = events(loyalty, "crm.points.adjusted")
    assert (event["data"]["kind"], event["data"]["points"], event["data"]["lifetime_points"]) == ("reverse", -42, 0)


def test_reversing_an_earn_whose_points_were_spent_is_a_409(client):
    member = enrol(client)
    earned = client.post("/api/v1/loyalty/purchases", headers=rw(), json=purchase_body(member["contact_id"])).json
    client.post(f"/api/v1/loyalty/members/{member['id']}/redemptions", headers=rw(), json={"points": 40})

    r = client.post(f"/api/v1/loyalty/members/{member['id']}/transactions/{earned['transaction_id']}/reversal",
                    headers=admin(), json={"reason": "goods returned"})

    assert r.status_code == 409 and balance(client, member["id"]) == 2


def test_reversing_a_redemption_gives_the_points_back(client):
    member = enrol(client)
    credit(client, member["id"], 50)
    spent = client.post(f"/api/v1/loyalty/members/{member['id']}/redemptions", headers=rw(), json={"points": 50}).json

    r = client.post(f"/api/v1/loyalty/members/{member['id']}/transactions/{spent['id']}/reversal", headers=admin(),
                    json={"reason": "voucher cancelled"})

    assert r.status_code == 201 and r.json["points"] == 50 and balance(client, member["id"]) == 50


# --- listing ------------------------------------------------------------------------------------------------

def test_transactions_are_listed_newest_first_in_cursor_pages_and_filtered_by_kind(client):
    member = enrol(client)
    for points in (10, 20, 30):
        credit(client, member["id"], points)
    client.post(f"/api/v1/loyalty/members/{member['id']}/redemptions", headers=rw(), json={"points": 5})
    base = f"/api/v1/loyalty/members/{member['id']}/transactions"

    first = client.get(f"{base}?limit=2", headers=rw()).json
    second = client.get(f"{base}?limit=2&cursor={first['next_cursor']}", headers=rw()).json

    assert [t["points"] for t in first["items"] + second["items"]] == [-5, 30, 20, 10]
    assert [t["balance_after"] for t in first["items"] + second["items"]] == [55, 60, 30, 10]
    assert second["next_cursor"] is None
    adjusts = client.get(f"{base}?kind=adjust", headers=rw()).json["items"]
    assert {t["kind"] for t in adjusts} == {"adjust"} and len(adjusts) == 3
    bad = client.get(f"{base}?kind=gift&limit=0&cursor=nope", headers=rw())
    assert bad.status_code == 422 and {"kind", "limit"} <= set(bad.json["errors"])
    assert client.get(f"{base}?cursor=nope", headers=rw()).json["errors"] == {"cursor": ["Invalid cursor."]}


def test_members_are_listed_with_their_balances_and_filtered_by_contact(client):
    members = [enrol(client) for _ in range(3)]
    credit(client, members[1]["id"], 7)

    everyone = client.get("/api/v1/loyalty/members?limit=2", headers=rw()).json
    one = client.get(f"/api/v1/loyalty/members?contact_id={members[1]['contact_id']}", headers=rw()).json

    assert [m["id"] for m in everyone["items"]] == [members[2]["id"], members[1]["id"]] and everyone["next_cursor"]
    assert [(m["id"], m["balance"]) for m in one["items"]] == [(members[1]["id"], 7)]


def test_the_loaded_plugins_are_listed(client):
    listed = client.get("/api/v1/loyalty/plugins", headers=identity_headers("plugins:read")).json

    assert {"name": "builtin.loyalty_points", "source": "builtin", "origin": "crm_builtin.loyalty_points",
            "hooks": ["crm_loyalty_points"], "available": True} in listed["items"]


# --- errors and scopes --------------------------------------------------------------------------------------

MEMBER = str(uuid.uuid4())


@pytest.mark.parametrize("method, path, kwargs, status", [
    ("get", f"/api/v1/loyalty/members/{MEMBER}", {}, 404),
    ("get", "/api/v1/loyalty/members/not-a-uuid", {}, 404),
    ("get", f"/api/v1/loyalty/members/{MEMBER}/transactions", {}, 404),
    ("post", f"/api/v1/loyalty/members/{MEMBER}/redemptions", {"json": {"points": 1}}, 404),
    ("post", f"/api/v1/loyalty/members/{MEMBER}/adjustments", {"json": {"points": 1, "reason": "x"}}, 404),
    ("post", f"/api/v1/loyalty/members/{MEMBER}/transactions/{uuid.uuid4()}/reversal", {"json": {"reason": "x"}}, 404),
    ("get", f"/api/v1/loyalty/programs/{MEMBER}", {}, 404),
    ("delete", "/api/v1/loyalty/purchases", {}, 405),
    ("post", "/api/v1/loyalty/purchases", {"data": "amount=1", "content_type": "application/x-www-form-urlencoded"}, 415),
    ("post", "/api/v1/loyalty/members", {"data": "<contact/>", "content_type": "text/xml"}, 415),
    ("post", "/api/v1/loyalty/members", {"json": {"contact_id": "nope"}}, 422),
])
def test_errors_are_problem_details(loyalty, client, method, path, kwargs, status):
    r = getattr(client, method)(path, headers=admin(), **kwargs)

    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json["status"] == status
    assert count(loyalty, Member) == count(loyalty, LedgerEntry) == 0


@pytest.mark.parametrize("method, path, body", [
    ("post", "/api/v1/loyalty/purchases", purchase_body()),
    ("post", "/api/v1/loyalty/members", {"contact_id": str(uuid.uuid4())}),
    ("post", "/api/v1/loyalty/programs", {"code": "x", "name": "x", "currency": "EUR", "points_per_unit": "1"}),
    ("patch", f"/api/v1/loyalty/programs/{DEFAULT_PROGRAM_ID}", {"auto_enrol": False}),
    ("post", f"/api/v1/loyalty/members/{MEMBER}/redemptions", {"points": 1}),
    ("post", f"/api/v1/loyalty/members/{MEMBER}/adjustments", {"points": 1, "reason": "x"}),
    ("post", f"/api/v1/loyalty/members/{MEMBER}/transactions/{MEMBER}/reversal", {"reason": "x"}),
])
def test_writing_needs_loyalty_write(loyalty, client, method, path, body):
    r = getattr(client, method)(path, headers=identity_headers("loyalty:read"), json=body)

    assert r.status_code == 403 and r.headers["Content-Type"].startswith("application/problem+json")
    assert count(loyalty, Member) == count(loyalty, IdempotencyRecord) == 0


@pytest.mark.parametrize("path", [
    "/api/v1/loyalty/programs", f"/api/v1/loyalty/programs/{DEFAULT_PROGRAM_ID}", "/api/v1/loyalty/members",
    f"/api/v1/loyalty/members/{MEMBER}", f"/api/v1/loyalty/members/{MEMBER}/transactions",
])
def test_reading_needs_loyalty_read_and_every_route_needs_an_identity(client, path):
    assert client.get(path, headers=identity_headers("leads:read", "loyalty:write")).status_code == 403
    assert client.get(path).status_code == 401
    forged = {"X-CRM-Identity": identity_headers("loyalty:read", private_key=generate_keypair()[0])["X-CRM-Identity"]}
    assert client.get(path, headers=forged).status_code == 401


def test_a_service_wide_scope_or_admin_is_enough(client):
    assert client.get("/api/v1/loyalty/members", headers=identity_headers("loyalty:*")).status_code == 200
    assert client.post("/api/v1/loyalty/members", headers=identity_headers("admin"),
                       json={"contact_id": str(uuid.uuid4())}).status_code == 201


def test_partner_keys_cannot_use_loyalty(client):
    headers = identity_headers(kind="partner", partner_id=str(uuid.uuid4()))
    assert client.get("/api/v1/loyalty/members", headers=headers).status_code == 403


def test_the_openapi_document_lists_every_route_and_the_idempotency_header(client):
    spec = client.get("/api/openapi.json", headers=rw()).json

    assert {"/api/v1/loyalty/purchases", "/api/v1/loyalty/members/{member_id}/redemptions",
            "/api/v1/loyalty/members/{member_id}/transactions"} <= set(spec["paths"])
    params = spec["paths"]["/api/v1/loyalty/purchases"]["post"]["parameters"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in params)
