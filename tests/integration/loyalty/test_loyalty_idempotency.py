"""Duplicate purchases and retries on the real PostgreSQL: points are earned once, whatever the client repeats."""
from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

import pytest
from crm_plugins import hookimpl

from services.common.db import utcnow
from services.common.idempotency import IN_FLIGHT, fingerprint
from services.loyalty.models import IdempotencyRecord, LedgerEntry, Member, Purchase
from tests.integration.loyalty.support import (
    admin,
    balance,
    count,
    credit,
    enrol,
    events,
    purchase_body,
    rw,
)
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration


def _post_purchase(client, body, **headers):
    return client.post("/api/v1/loyalty/purchases", headers=rw(**headers), json=body)


def test_the_same_purchase_sent_five_times_by_external_id_earns_points_once(loyalty, client):
    body = purchase_body(external_id="receipt-5x")

    responses = [_post_purchase(client, body) for _ in range(5)]

    assert [r.status_code for r in responses] == [201, 200, 200, 200, 200]
    assert all(r.json == responses[0].json for r in responses)
    assert balance(client, responses[0].json["member_id"]) == 42
    assert count(loyalty, Purchase) == 1 and count(loyalty, LedgerEntry) == 1
    assert len(events(loyalty, "crm.purchase.recorded")) == len(events(loyalty, "crm.points.earned")) == 1


def test_the_same_purchase_sent_five_times_concurrently_by_external_id_earns_points_once(loyalty):
    member = enrol(loyalty.test_client())
    body = {"member_id": member["id"], "amount": "42.50", "currency": "EUR", "occurred_at": "2026-03-14T10:30:00Z",
            "external_id": "receipt-race"}
    barrier = threading.Barrier(5)
    results = []

    def send():
        client = loyalty.test_client()
        barrier.wait()
        results.append(_post_purchase(client, body))

    threads = [threading.Thread(target=send) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(r.status_code for r in results) == [200, 200, 200, 200, 201]
    assert len({r.json["id"] for r in results}) == 1
    assert balance(loyalty.test_client(), member["id"]) == 42
    assert count(loyalty, Purchase) == 1 and len(events(loyalty, "crm.points.earned")) == 1


def test_the_same_purchase_sent_five_times_with_one_idempotency_key_earns_points_once(loyalty, client):
    body = purchase_body()  # no external_id: only the key tells the repeats apart
    key = str(uuid.uuid4())

    responses = [_post_purchase(client, body, **{"Idempotency-Key": key}) for _ in range(5)]

    assert [r.status_code for r in responses] == [201] * 5
    assert all(r.json == responses[0].json for r in responses)
    assert [r.headers.get("Idempotent-Replayed") for r in responses] == [None] + ["true"] * 4
    assert balance(client, responses[0].json["member_id"]) == 42
    assert count(loyalty, Purchase) == 1 and count(loyalty, Member) == 1
    assert len(events(loyalty, "crm.points.earned")) == len(events(loyalty, "crm.member.enrolled")) == 1


def test_a_key_replays_even_when_the_json_is_sent_in_another_key_order(client):
    body = purchase_body()
    key = str(uuid.uuid4())
    first = _post_purchase(client, body, **{"Idempotency-Key": key})

    reordered = dict(reversed(list(body.items())))
    again = _post_purchase(client, reordered, **{"Idempotency-Key": key})

    assert again.status_code == 201 and again.json == first.json and again.headers["Idempotent-Replayed"] == "true"


def test_the_same_key_with_a_different_body_is_a_422_and_nothing_more_is_stored(loyalty, client):
    key = str(uuid.uuid4())
    contact_id = str(uuid.uuid4())
    assert _post_purchase(client, purchase_body(contact_id), **{"Idempotency-Key": key}).status_code == 201

    r = _post_purchase(client, purchase_body(contact_id, amount="99.00"), **{"Idempotency-Key": key})

    assert r.status_code == 422 and list(r.json["errors"]) == ["Idempotency-Key"]
    assert count(loyalty, Purchase) == 1 and count(loyalty, LedgerEntry) == 1


def test_the_same_key_on_another_route_is_a_422(client):
    key = str(uuid.uuid4())
    member = enrol(client)
    credit(client, member["id"], 10)
    assert client.post(f"/api/v1/loyalty/members/{member['id']}/redemptions", headers=rw(**{"Idempotency-Key": key}),
                       json={"points": 1}).status_code == 201

    r = client.post(f"/api/v1/loyalty/members/{member['id']}/adjustments", headers=admin(**{"Idempotency-Key": key}),
                    json={"points": 1})

    assert r.status_code == 422 and "Idempotency-Key" in r.json["errors"]


def test_a_key_still_in_flight_is_a_409_and_the_first_response_is_replayed_afterwards(loyalty):
    class Gate:
        """Holds the first purchase inside its transaction until the test lets it go."""

        def __init__(self):
            self.entered, self.release = threading.Event(), threading.Event()

        @hookimpl
        def crm_loyalty_points(self, purchase):
            self.entered.set()
            assert self.release.wait(20)

    gate = Gate()
    loyalty.extensions["crm.runtime"].plugins.register(gate, name="gate")
    key, body = str(uuid.uuid4()), purchase_body()
    first = []
    worker = threading.Thread(target=lambda: first.append(_post_purchase(loyalty.test_client(), body,
                                                                          **{"Idempotency-Key": key})))
    worker.start()
    try:
        assert gate.entered.wait(20)
        busy = _post_purchase(loyalty.test_client(), body, **{"Idempotency-Key": key})
    finally:
        gate.release.set()
        worker.join(30)

    assert busy.status_code == 409 and busy.headers["Content-Type"].startswith("application/problem+json")
    assert first[0].status_code == 201
    replay = _post_purchase(loyalty.test_client(), body, **{"Idempotency-Key": key})
    assert replay.status_code == 201 and replay.json == first[0].json
    assert count(loyalty, Purchase) == 1


def test_a_failed_request_releases_its_key_so_a_retry_with_the_same_key_can_succeed(loyalty, client):
    member = enrol(client)
    key = str(uuid.uuid4())
    path = f"/api/v1/loyalty/members/{member['id']}/redemptions"

    short = client.post(path, headers=rw(**{"Idempotency-Key": key}), json={"points": 30})
    credit(client, member["id"], 30)
    retried = client.post(path, headers=rw(**{"Idempotency-Key": key}), json={"points": 30})
    replayed = client.post(path, headers=rw(**{"Idempotency-Key": key}), json={"points": 30})

    assert (short.status_code, retried.status_code, replayed.status_code) == (409, 201, 201)
    assert replayed.json == retried.json and balance(client, member["id"]) == 0
    assert len(events(loyalty, "crm.points.redeemed")) == 1


def test_an_expired_in_flight_claim_is_taken_over(loyalty, client):
    body = purchase_body()
    key = str(uuid.uuid4())
    with loyalty.extensions["crm.runtime"].session_factory() as s, s.begin():
        # A claim left behind by a process that died before committing anything.
        s.add(IdempotencyRecord(principal="test-key", key=key, status=IN_FLIGHT, claim_token="dead",
                                fingerprint=fingerprint("POST", "/api/v1/loyalty/purchases", json.dumps(body).encode()),
                                locked_until=utcnow() - timedelta(seconds=1)))

    r = _post_purchase(client, body, **{"Idempotency-Key": key})

    assert r.status_code == 201 and count(loyalty, Purchase) == 1


def test_idempotency_keys_belong_to_one_api_key(loyalty, client):
    key = str(uuid.uuid4())
    body = {"contact_id": str(uuid.uuid4())}
    mine = client.post("/api/v1/loyalty/members", headers=rw(**{"Idempotency-Key": key}), json=body)
    theirs = client.post("/api/v1/loyalty/members", json=body, headers={
        **identity_headers("loyalty:write", key_id="another-app"), "Idempotency-Key": key})

    assert mine.status_code == 201
    assert theirs.status_code == 409 and "Idempotent-Replayed" not in theirs.headers  # ran for real: already enrolled
    assert count(loyalty, IdempotencyRecord) == 1


@pytest.mark.parametrize("key", ["", "a b", "x" * 256])
def test_an_unusable_key_is_a_422_naming_the_header(loyalty, client, key):
    r = _post_purchase(client, purchase_body(), **{"Idempotency-Key": key})

    assert r.status_code == 422 and list(r.json["errors"]) == ["Idempotency-Key"]
    assert count(loyalty, Purchase) == 0


def test_an_external_id_reused_for_a_different_purchase_is_a_409(loyalty, client):
    contact_id = str(uuid.uuid4())
    assert _post_purchase(client, purchase_body(contact_id, external_id="r-1")).status_code == 201

    r = _post_purchase(client, purchase_body(contact_id, external_id="r-1", amount="10.00"))

    assert r.status_code == 409 and count(loyalty, Purchase) == 1


def test_external_ids_are_unique_per_program_not_across_programs(loyalty, client):
    gold = client.post("/api/v1/loyalty/programs", headers=admin(), json={
        "code": "gold", "name": "Gold", "currency": "EUR", "points_per_unit": "2", "auto_enrol": True}).json
    contact_id = str(uuid.uuid4())

    a = _post_purchase(client, purchase_body(contact_id, external_id="r-9"))
    b = _post_purchase(client, purchase_body(contact_id, external_id="r-9", program_id=gold["id"]))

    assert (a.status_code, b.status_code) == (201, 201) and (a.json["points"], b.json["points"]) == (42, 85)


def test_twenty_concurrent_redemptions_never_overdraw(loyalty):
    member = enrol(loyalty.test_client())
    credit(loyalty.test_client(), member["id"], 100)
    barrier = threading.Barrier(20)
    results = []

    def redeem():
        client = loyalty.test_client()
        barrier.wait()
        results.append(client.post(f"/api/v1/loyalty/members/{member['id']}/redemptions", headers=rw(),
                                   json={"points": 30}))

    threads = [threading.Thread(target=redeem) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    statuses = sorted(r.status_code for r in results)
    assert set(statuses) <= {201, 409}, [r.text for r in results if r.status_code not in (201, 409)]
    redeemed = sum(-r.json["points"] for r in results if r.status_code == 201)
    assert redeemed <= 100 and statuses.count(201) == 3  # 3 x 30 fit into 100, a 4th would not
    client = loyalty.test_client()
    assert balance(client, member["id"]) == 100 - redeemed == 10
    entries = client.get(f"/api/v1/loyalty/members/{member['id']}/transactions?limit=200", headers=rw()).json["items"]
    assert all(e["balance_after"] >= 0 for e in entries)
    assert sorted(e["balance_after"] for e in entries if e["kind"] == "redeem") == [10, 40, 70]
    assert len(events(loyalty, "crm.points.redeemed")) == 3
