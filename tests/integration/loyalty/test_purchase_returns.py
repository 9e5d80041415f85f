"""Margins, discounts and returns in loyalty on the real PostgreSQL: what a purchase made, what a return gives back."""
from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import select

from services.loyalty.models import IdempotencyRecord, LedgerEntry, Purchase, PurchaseReturn
from tests.integration.loyalty.support import (
    admin,
    balance,
    count,
    enrol,
    events,
    purchase_body,
    rw,
)
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

PURCHASES = "/api/v1/loyalty/purchases"
DEFAULT_PROGRAM = "/api/v1/loyalty/programs/5b0c3f52-8d3e-4a7e-9b61-6c0d1f2a9e01"
LATER = "2026-03-20T09:00:00Z"


def _buy(client, contact_id=None, **changes) -> dict:
    r = client.post(PURCHASES, headers=rw(), json=purchase_body(contact_id, **changes))
    assert r.status_code == 201, r.text
    return r.json


def _return(client, purchase_id, headers=None, **body):
    return client.post(f"{PURCHASES}/{purchase_id}/returns", headers=headers or rw(),
                       json={"occurred_at": LATER, **body})


def _ledger(loyalty, purchase_id) -> list[tuple[str, int]]:
    with loyalty.extensions["crm.runtime"].session_factory() as s:
        return [tuple(row) for row in s.execute(select(LedgerEntry.kind, LedgerEntry.points)
                                                .where(LedgerEntry.purchase_id == uuid.UUID(purchase_id))
                                                .order_by(LedgerEntry.seq))]


# --- margin, discount and the program's margin rate -----------------------------------------------------------

def test_a_purchase_keeps_the_margin_and_discount_it_was_given_and_publishes_them(loyalty, client):
    bought = _buy(client, amount="42.50", margin="12.75", discount="7.5")

    assert (bought["margin"], bought["discount"], bought["returned_amount"]) == ("12.75", "7.50", "0.00")
    (event,) = events(loyalty, "crm.purchase.recorded")
    # Exact decimal strings, as the caller sent them.
    assert (event["data"]["margin"], event["data"]["discount"]) == ("12.75", "7.5")


def test_without_a_margin_the_programs_rate_gives_it_and_without_a_rate_there_is_none(loyalty, client):
    none = _buy(client, amount="10.00")
    assert none["margin"] is None and none["discount"] is None

    r = client.patch(DEFAULT_PROGRAM, headers=admin(), json={"margin_rate": "0.3333"})
    assert r.status_code == 200 and r.json["margin_rate"] == "0.3333"
    derived = _buy(client, amount="0.0005")
    assert derived["margin"] == "0.0002"  # 0.00016665 rounds half up to four places
    given = _buy(client, amount="10.00", margin="1")
    assert given["margin"] == "1.00"

    r = client.patch(DEFAULT_PROGRAM, headers=admin(), json={"margin_rate": None})
    assert r.status_code == 200 and r.json["margin_rate"] is None
    assert _buy(client, amount="10.00")["margin"] is None
    margins = [e["data"]["margin"] for e in events(loyalty, "crm.purchase.recorded")]
    assert margins == [None, "0.0002", "1", None]


def test_a_new_program_may_have_a_margin_rate(client):
    r = client.post("/api/v1/loyalty/programs", headers=admin(), json={
        "code": "gold", "name": "Gold", "currency": "EUR", "points_per_unit": "1", "margin_rate": "0.25"})
    assert r.status_code == 201 and r.json["margin_rate"] == "0.25"
    bad = client.post("/api/v1/loyalty/programs", headers=admin(), json={
        "code": "silver", "name": "Silver", "currency": "EUR", "points_per_unit": "1", "margin_rate": "1.5"})
    assert bad.status_code == 422 and list(bad.json["errors"]) == ["margin_rate"]


@pytest.mark.parametrize("changes, fields", [
    ({"margin": "42.51"}, ["margin"]),
    ({"margin": "-1"}, ["margin"]),
    ({"margin": 3}, ["margin"]),
    ({"discount": "-0.01"}, ["discount"]),
])
def test_a_margin_above_the_amount_or_a_negative_discount_is_a_422_naming_it(loyalty, client, changes, fields):
    r = client.post(PURCHASES, headers=rw(), json=purchase_body(**changes))

    assert r.status_code == 422 and sorted(r.json["errors"]) == fields
    assert count(loyalty, Purchase) == 0


def test_a_receipt_sent_again_with_another_margin_or_discount_is_a_409(client):
    first = _buy(client, external_id="till-1", margin="10", discount="2")
    contact_id = first["contact_id"]

    again = client.post(PURCHASES, headers=rw(), json=purchase_body(contact_id, external_id="till-1", margin="10",
                                                                    discount="2"))
    assert again.status_code == 200 and again.json["id"] == first["id"]
    # Without the margin it may have come from the rate: still the same purchase.
    assert client.post(PURCHASES, headers=rw(), json=purchase_body(
        contact_id, external_id="till-1", discount="2")).status_code == 200
    for differs in ({"margin": "11", "discount": "2"}, {"margin": "10", "discount": "3"}, {"margin": "10"}):
        r = client.post(PURCHASES, headers=rw(), json=purchase_body(contact_id, external_id="till-1", **differs))
        assert r.status_code == 409, (differs, r.text)


# --- returns ----------------------------------------------------------------------------------------------

def test_returns_take_back_the_points_of_the_part_returned_and_the_last_one_the_rest(loyalty, client):
    bought = _buy(client, amount="42.50", margin="17.00")  # 42 points
    member_id = bought["member_id"]

    first = _return(client, bought["id"], amount="10.00", reason="too small")
    assert first.status_code == 201, first.text
    body = first.json
    # ceil(42 x 10 / 42.5) = ceil(9.88) = 10 points; the margin in proportion: 17 x 10 / 42.5 = 4.
    assert (body["amount"], body["margin"], body["points"], body["points_unrecovered"]) == ("10.00", "4.00", 10, 0)
    assert (body["returned_amount"], body["returnable_amount"], body["balance_after"]) == ("10.00", "32.50", 32)
    assert (body["purchase_id"], body["member_id"], body["currency"]) == (bought["id"], member_id, "EUR")

    rest = _return(client, bought["id"], amount="32.50")
    assert rest.status_code == 201, rest.text
    assert (rest.json["points"], rest.json["margin"], rest.json["returnable_amount"]) == (32, "13.00", "0.00")
    member = client.get(f"/api/v1/loyalty/members/{member_id}", headers=rw()).json
    assert (member["balance"], member["lifetime_points"]) == (0, 0)
    assert _ledger(loyalty, bought["id"]) == [("earn", 42), ("return", -10), ("return", -32)]
    kinds = client.get(f"/api/v1/loyalty/members/{member_id}/transactions?kind=return", headers=rw()).json["items"]
    assert [entry["points"] for entry in kinds] == [-32, -10]

    returned = events(loyalty, "crm.purchase.returned")
    assert [(e["data"]["amount"], e["data"]["margin"], e["data"]["points"]) for e in returned] == [
        ("10.00", "4.0000", 10), ("32.50", "13.0000", 32)]
    assert returned[0]["data"]["return_id"] == body["id"] and returned[0]["data"]["reason"] == "too small"
    assert returned[0]["subject"] == member_id
    reclaimed = events(loyalty, "crm.points.reclaimed")
    assert [(e["data"]["points"], e["data"]["balance"], e["data"]["lifetime_points"]) for e in reclaimed] == [
        (10, 32, 32), (32, 0, 0)]
    assert reclaimed[0]["data"]["transaction_id"] == body["transaction_id"]


def test_returning_more_than_is_left_is_a_409_and_changes_nothing(loyalty, client):
    bought = _buy(client, amount="42.50")
    assert _return(client, bought["id"], amount="40").status_code == 201

    r = _return(client, bought["id"], amount="2.51")
    assert r.status_code == 409 and r.headers["Content-Type"].startswith("application/problem+json")
    assert (r.json["returnable"], r.json["returned"]) == ("2.5000", "40.0000")
    assert count(loyalty, PurchaseReturn) == 1
    assert balance(client, bought["member_id"]) == 42 - 40


def test_a_purchase_that_earned_nothing_is_returned_without_a_ledger_entry(loyalty, client):
    r = client.patch(DEFAULT_PROGRAM, headers=admin(), json={"points_per_unit": "0"})
    assert r.status_code == 200
    bought = _buy(client, amount="5.00")

    r = _return(client, bought["id"], amount="5")
    assert r.status_code == 201 and (r.json["points"], r.json["transaction_id"]) == (0, None)
    assert r.json["margin"] is None
    assert _ledger(loyalty, bought["id"]) == [("earn", 0)]
    assert events(loyalty, "crm.points.reclaimed") == [] and len(events(loyalty, "crm.purchase.returned")) == 1


def test_points_already_spent_are_taken_back_as_far_as_the_balance_goes(loyalty, client):
    bought = _buy(client, amount="42.50")
    member_id = bought["member_id"]
    assert client.post(f"/api/v1/loyalty/members/{member_id}/redemptions", headers=rw(),
                       json={"points": 40}).status_code == 201

    r = _return(client, bought["id"], amount="42.50")
    assert r.status_code == 201, r.text
    assert (r.json["points"], r.json["points_unrecovered"], r.json["balance_after"]) == (2, 40, 0)
    assert balance(client, member_id) == 0
    with loyalty.extensions["crm.runtime"].session_factory() as s:
        assert s.scalar(select(Purchase.points_reclaimed).where(Purchase.id == uuid.UUID(bought["id"]))) == 2


def test_the_margin_given_back_can_be_named_within_what_is_left(loyalty, client):
    bought = _buy(client, amount="100", margin="30")
    assert _return(client, bought["id"], amount="50", margin="29").json["margin"] == "29.00"

    too_much = _return(client, bought["id"], amount="40", margin="1.01")
    assert too_much.status_code == 422 and list(too_much.json["errors"]) == ["margin"]
    # The rest of the amount gives back the rest of the margin, never more than itself.
    assert _return(client, bought["id"], amount="50").json["margin"] == "1.00"
    no_margin = _buy(client, amount="10")
    r = _return(client, no_margin["id"], amount="1", margin="0.5")
    assert r.status_code == 422 and list(r.json["errors"]) == ["margin"]


@pytest.mark.parametrize("body, fields", [
    ({"amount": "0"}, ["amount"]),
    ({"amount": 1}, ["amount"]),
    ({"amount": "1", "margin": "2"}, ["margin"]),
    ({"amount": "1", "occurred_at": "2026-03-20T09:00:00"}, ["occurred_at"]),
    ({"amount": "1", "occurred_at": "2026-03-14T10:29:59Z"}, ["occurred_at"]),  # before the purchase
    ({"amount": "1", "reason": ""}, ["reason"]),
])
def test_an_invalid_return_is_a_422_naming_the_fields_and_nothing_is_stored(loyalty, client, body, fields):
    bought = _buy(client)

    r = client.post(f"{PURCHASES}/{bought['id']}/returns", headers=rw(), json={"occurred_at": LATER, **body})
    assert r.status_code == 422, r.text
    assert sorted(r.json["errors"]) == fields
    assert count(loyalty, PurchaseReturn) == 0 and balance(client, bought["member_id"]) == 42


def test_a_return_of_an_unknown_purchase_is_a_404(client):
    r = _return(client, uuid.uuid4(), amount="1")
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("application/problem+json")


def test_two_concurrent_returns_of_one_purchase_cannot_return_more_than_it(loyalty, client):
    bought = _buy(client, amount="42.50")
    barrier = threading.Barrier(6)
    statuses, lock = [], threading.Lock()

    def send():
        own = loyalty.test_client()
        barrier.wait()
        r = _return(own, bought["id"], amount="10.00")
        with lock:
            statuses.append(r.status_code)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert sorted(statuses) == [201] * 4 + [409] * 2
    with loyalty.extensions["crm.runtime"].session_factory() as s:
        purchase = s.scalar(select(Purchase).where(Purchase.id == uuid.UUID(bought["id"])))
        assert (purchase.returned_amount, purchase.points_reclaimed) == (40, 10 + 10 + 10 + 10)
    # ceil(42 x 10/42.5) = 10, ceil(42 x 20/42.5) = 20, 30, ceil(39.5) = 40: whichever order they ran in.
    assert balance(client, bought["member_id"]) == 2
    assert [points for _kind, points in _ledger(loyalty, bought["id"])] == [42, -10, -10, -10, -10]


def test_a_return_sent_again_with_its_idempotency_key_is_recorded_once(loyalty, client):
    bought = _buy(client)
    headers = rw(**{"Idempotency-Key": "return-1"})

    first = _return(client, bought["id"], headers=headers, amount="5")
    again = _return(client, bought["id"], headers=headers, amount="5")
    assert first.status_code == again.status_code == 201
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    other = _return(client, bought["id"], headers=headers, amount="6")
    assert other.status_code == 422 and "Idempotency-Key" in other.json["errors"]
    assert count(loyalty, PurchaseReturn) == 1 and count(loyalty, IdempotencyRecord) == 1


def test_returning_needs_loyalty_write_and_a_writer_without_read_gets_a_receipt(loyalty, client):
    bought = _buy(client)

    refused = _return(client, bought["id"], headers=identity_headers("loyalty:read"), amount="1")
    assert refused.status_code == 403 and count(loyalty, PurchaseReturn) == 0
    receipt = _return(client, bought["id"], headers=identity_headers("loyalty:write"), amount="1")
    assert receipt.status_code == 201 and set(receipt.json) == {"id"}
    too_much = _return(client, bought["id"], headers=identity_headers("loyalty:write"), amount="100")
    assert too_much.status_code == 409 and "returnable" not in too_much.json


def test_reversing_an_earn_after_a_return_takes_only_what_the_return_left_and_returns_cannot_be_reversed(
        loyalty, client):
    bought = _buy(client, amount="42.50")
    returned = _return(client, bought["id"], amount="10.00").json
    member_id = bought["member_id"]

    refused = client.post(f"/api/v1/loyalty/members/{member_id}/transactions/{returned['transaction_id']}/reversal",
                          headers=admin(), json={"reason": "oops"})
    assert refused.status_code == 409
    reversal = client.post(f"/api/v1/loyalty/members/{member_id}/transactions/{bought['transaction_id']}/reversal",
                           headers=admin(), json={"reason": "fraud"})
    assert reversal.status_code == 201 and reversal.json["points"] == -32
    member = client.get(f"/api/v1/loyalty/members/{member_id}", headers=rw()).json
    assert (member["balance"], member["lifetime_points"]) == (0, 0)
    # Nothing is left to take back once the earn is reversed.
    assert _return(client, bought["id"], amount="32.50").json["points"] == 0


def test_a_return_of_a_purchase_whose_member_was_merged_lands_on_the_surviving_membership(loyalty, client):
    from services.common.catalog import make_event
    from services.common.consumer import InboxDispatcher
    from services.loyalty import handlers

    survivor, merged = uuid.uuid4(), uuid.uuid4()
    kept = enrol(client, survivor)
    bought = _buy(client, merged, amount="20.00")
    runtime = loyalty.extensions["crm.runtime"]
    dispatcher = InboxDispatcher(lambda **kw: runtime.uow(**kw), runtime.inbox_model, handlers.HANDLERS)
    dispatcher.dispatch(make_event("crm.contact.merged", {"survivor_id": survivor, "merged_id": merged},
                                   source="/services/contacts"))

    r = _return(client, bought["id"], amount="20")
    assert r.status_code == 201, r.text
    assert (r.json["member_id"], r.json["contact_id"], r.json["points"]) == (kept["id"], str(survivor), 20)
    assert balance(client, kept["id"]) == 0


def test_the_openapi_document_lists_the_returns_route_with_the_idempotency_header(client):
    spec = client.get("/api/openapi.json", headers=rw()).json
    post = spec["paths"]["/api/v1/loyalty/purchases/{purchase_id}/returns"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in post["parameters"])
