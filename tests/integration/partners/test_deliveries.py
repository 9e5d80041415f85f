"""Recording and reading a partner's deliveries, internally and through the portal, on the real PostgreSQL."""
from __future__ import annotations

import uuid

import pytest

from services.partners.models import Delivery
from tests.support.auth import identity_headers

from .conftest import READ, RW

pytestmark = pytest.mark.integration

PORTAL = "/api/v1/partner-portal"


def delivery(reference="PO-1", **fields) -> dict:
    return {"order_reference": reference, "promised_on": "2026-08-10", "delivered_on": "2026-08-12",
            "quantity_ordered": "100", "quantity_delivered": "95.5", "quantity_rejected": "2",
            "amount": "950.00", "agreed_amount": "1000.00", "currency": "EUR", **fields}


@pytest.fixture
def partner(api):
    return api.partner("Steelworks")


def post(client, partner_id, body, headers=RW):
    return client.post(f"/api/v1/partners/{partner_id}/deliveries", headers=headers, json=body)


def test_recording_a_delivery_stores_it_and_records_the_event(client, api, partner, store):
    contract = api.contract(partner["id"])
    r = post(client, partner["id"], delivery(contract_id=contract["id"]))
    assert r.status_code == 201, r.text
    body = r.json
    assert r.headers["Location"].endswith(f"/api/v1/partners/{partner['id']}/deliveries/{body['id']}")
    assert {k: body[k] for k in ("order_reference", "promised_on", "delivered_on", "quantity_ordered",
                                 "quantity_delivered", "quantity_rejected", "amount", "agreed_amount", "currency",
                                 "contract_id", "partner_id")} == {
        "order_reference": "PO-1", "promised_on": "2026-08-10", "delivered_on": "2026-08-12",
        "quantity_ordered": "100.000", "quantity_delivered": "95.500", "quantity_rejected": "2.000",
        "amount": "950.00", "agreed_amount": "1000.00", "currency": "EUR", "contract_id": contract["id"],
        "partner_id": partner["id"]}
    assert body["recorded_by"]
    assert client.get(f"/api/v1/partners/{partner['id']}/deliveries/{body['id']}", headers=READ).json == body
    (event,) = store.events("crm.delivery.recorded")
    assert event["data"]["delivery_id"] == body["id"] and event["data"]["partner_id"] == partner["id"]
    assert (event["data"]["promised_on"], event["data"]["delivered_on"]) == ("2026-08-10", "2026-08-12")
    assert event["data"]["contract_id"] == contract["id"]


def test_an_order_that_never_arrived_is_recorded_without_a_delivery_date(client, partner):
    r = post(client, partner["id"], delivery(delivered_on=None, quantity_delivered="0", quantity_rejected="0"))
    assert r.status_code == 201, r.text
    assert r.json["delivered_on"] is None and r.json["quantity_delivered"] == "0.000"


def test_the_same_order_again_returns_the_stored_delivery_and_other_values_conflict(client, partner, store):
    first = post(client, partner["id"], delivery())
    again = post(client, partner["id"], delivery(quantity_ordered="100.000"))
    assert again.status_code == 200 and again.json == first.json
    other = post(client, partner["id"], delivery(delivered_on="2026-08-20"))
    assert other.status_code == 409
    assert other.json["existing_id"] == first.json["id"]
    assert store.count(Delivery) == 1 and len(store.events("crm.delivery.recorded")) == 1
    # A key that may write but not read learns nothing about the stored delivery.
    writer = post(client, partner["id"], delivery(delivered_on="2026-08-20"),
                  headers=identity_headers("partners:write"))
    assert writer.status_code == 409 and "existing_id" not in writer.json and "PO-1" not in writer.text
    # Another partner's order with the same reference is its own.
    other_partner = client.post("/api/v1/partners", headers=RW, json={"name": "Other", "type": "vendor"}).json
    assert post(client, other_partner["id"], delivery()).status_code == 201


def test_an_idempotency_key_replays_the_first_response(client, partner, store):
    headers = {**RW, "Idempotency-Key": "delivery-1"}
    first = post(client, partner["id"], delivery(), headers=headers)
    replay = post(client, partner["id"], delivery(), headers=headers)
    assert (first.status_code, replay.status_code) == (201, 201) and replay.json == first.json
    assert post(client, partner["id"], delivery("PO-2"), headers=headers).status_code == 422
    assert store.count(Delivery) == 1


@pytest.mark.parametrize("changes, field", [
    ({"quantity_delivered": "101"}, "quantity_delivered"),
    ({"quantity_rejected": "96"}, "quantity_rejected"),
    ({"quantity_ordered": "0"}, "quantity_ordered"),
    ({"quantity_ordered": "1.0001"}, "quantity_ordered"),
    ({"amount": "-1"}, "amount"),
    ({"amount": "1.001"}, "amount"),
    ({"agreed_amount": 1e400}, "agreed_amount"),
    ({"currency": "eur"}, "currency"),
    ({"promised_on": "2026-02-30"}, "promised_on"),
    ({"delivered_on": None}, "delivered_on"),
    ({"delivered_on": "2999-01-01"}, "delivered_on"),
    ({"order_reference": "  "}, "order_reference"),
    ({"order_reference": "x" * 101}, "order_reference"),
    ({"contract_id": "not-a-uuid"}, "contract_id"),
    ({"contract_id": str(uuid.uuid4())}, "contract_id"),
    ({"colour": "red"}, "colour"),
])
def test_an_invalid_delivery_is_a_422_naming_the_field(client, partner, store, changes, field):
    r = post(client, partner["id"], delivery(**changes))
    assert r.status_code == 422, r.text
    assert field in r.json["errors"], r.json
    assert store.count(Delivery) == 0


def test_a_contract_of_another_partner_is_refused(client, api, partner, store):
    other = api.partner("Other")
    foreign = api.contract(other["id"])
    r = post(client, partner["id"], delivery(contract_id=foreign["id"]))
    assert r.status_code == 422 and list(r.json["errors"]) == ["contract_id"]
    assert store.count(Delivery) == 0


def test_an_unknown_partner_is_404_and_scopes_are_checked(client, partner):
    assert post(client, str(uuid.uuid4()), delivery()).status_code == 404
    assert post(client, partner["id"], delivery(), headers=READ).status_code == 403
    assert client.get(f"/api/v1/partners/{partner['id']}/deliveries",
                      headers=identity_headers("contacts:read")).status_code == 403
    assert client.get(f"/api/v1/partners/{uuid.uuid4()}/deliveries", headers=READ).status_code == 404


def test_the_list_pages_filters_by_period_and_contract_and_sorts(client, api, partner):
    contract = api.contract(partner["id"])
    promised = ["2026-06-30", "2026-07-01", "2026-09-30", "2026-10-01"]
    ids = [post(client, partner["id"], delivery(f"PO-{i}", promised_on=day, delivered_on="2026-10-02",
                                                contract_id=contract["id"] if i % 2 else None)).json["id"]
           for i, day in enumerate(promised)]
    base = f"/api/v1/partners/{partner['id']}/deliveries"
    everything = client.get(base, headers=READ).json
    assert [d["id"] for d in everything["items"]] == ids[::-1] and everything["next_cursor"] is None
    q3 = client.get(f"{base}?period=2026-Q3&sort=promised_on", headers=READ).json
    assert [d["id"] for d in q3["items"]] == ids[1:3]
    assert [d["id"] for d in client.get(f"{base}?period=2026-07", headers=READ).json["items"]] == [ids[1]]
    assert len(client.get(f"{base}?period=2026", headers=READ).json["items"]) == 4
    by_contract = client.get(f"{base}?contract_id={contract['id']}&sort=-promised_on", headers=READ).json
    assert [d["id"] for d in by_contract["items"]] == [ids[3], ids[1]]
    page1 = client.get(f"{base}?limit=3&sort=promised_on", headers=READ).json
    page2 = client.get(f"{base}?limit=3&sort=promised_on&cursor={page1['next_cursor']}", headers=READ).json
    assert [d["id"] for d in page1["items"] + page2["items"]] == ids and page2["next_cursor"] is None
    for bad in ("period=2026-Q5", "period=2026-13", "period=26", "sort=colour"):
        r = client.get(f"{base}?{bad}", headers=READ)
        assert r.status_code == 422 and bad.split("=")[0] in r.json["errors"], bad


def test_another_partners_delivery_is_not_found_on_the_internal_route(client, api, partner):
    other = api.partner("Other")
    theirs = post(client, other["id"], delivery()).json
    r = client.get(f"/api/v1/partners/{partner['id']}/deliveries/{theirs['id']}", headers=READ)
    assert r.status_code == 404


# -- the portal --------------------------------------------------------------------------------------------

@pytest.fixture
def two_partners(api, client):
    """Partners A and B with two deliveries each, and a portal key for each."""
    made = []
    for name in ("A", "B"):
        p = api.partner(f"Partner {name}", status="active")
        ids = [post(client, p["id"], delivery(f"{name}-{i}")).json["id"] for i in (1, 2)]
        made.append((p["id"], ids, identity_headers(kind="partner", partner_id=p["id"], key_id=f"key-{name}")))
    return made


def test_the_portal_lists_and_reads_only_the_calling_partners_deliveries(client, two_partners):
    for partner_id, ids, headers in two_partners:
        r = client.get(f"{PORTAL}/deliveries", headers=headers)
        assert r.status_code == 200
        assert [d["id"] for d in r.json["items"]] == ids[::-1]
        assert {d["partner_id"] for d in r.json["items"]} == {partner_id}
        assert all("recorded_by" not in d for d in r.json["items"])
        one = client.get(f"{PORTAL}/deliveries/{ids[0]}", headers=headers)
        assert one.status_code == 200 and one.json["id"] == ids[0]
    # The partner id comes only from the token.
    (_a_id, a_ids, a_headers), (b_id, _b_ids, _) = two_partners
    r = client.get(f"{PORTAL}/deliveries?partner_id={b_id}", headers={**a_headers, "X-CRM-Partner-ID": b_id})
    assert [d["id"] for d in r.json["items"]] == a_ids[::-1]


def test_another_partners_delivery_is_404_exactly_like_a_missing_one(client, two_partners):
    (_a, _a_ids, a_headers), (_b, b_ids, b_headers) = two_partners
    missing = str(uuid.uuid4())
    for foreign, headers in ((b_ids[0], a_headers), (_a_ids[0], b_headers)):
        r = client.get(f"{PORTAL}/deliveries/{foreign}", headers=headers)
        absent = client.get(f"{PORTAL}/deliveries/{missing}", headers=headers)
        assert (r.status_code, absent.status_code) == (404, 404)
        assert r.json["detail"].replace(foreign, "<id>") == absent.json["detail"].replace(missing, "<id>")


def test_portal_delivery_routes_refuse_internal_keys_suspended_partners_and_writes(client, api, two_partners):
    (a_id, a_ids, a_headers), _ = two_partners
    paths = [f"{PORTAL}/deliveries", f"{PORTAL}/deliveries/{a_ids[0]}"]
    for path in paths:
        for headers in (RW, identity_headers("admin"), identity_headers("partners:*")):
            assert client.get(path, headers=headers).status_code == 403, path
        assert client.post(path, headers=a_headers, json=delivery("X")).status_code == 405
    assert client.patch(f"/api/v1/partners/{a_id}", headers=RW, json={"status": "suspended"}).status_code == 200
    for path in paths:
        assert client.get(path, headers=a_headers).status_code == 403, path
    # A partner key cannot record or read deliveries on the internal routes.
    assert post(client, a_id, delivery("X"), headers=a_headers).status_code == 403
    assert client.get(f"/api/v1/partners/{a_id}/deliveries", headers=a_headers).status_code == 403
