"""Purchases under faults: a killed contacts worker loses and doubles nothing; a repeated purchase earns once."""
from __future__ import annotations

import random
import signal
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tests.support.fixtures import Client
from tests.support.suite import wait_until

pytestmark = pytest.mark.reliability

PURCHASES = 1000
CLIENTS = 8


def _field(response, name: str):
    """One field of a 200 JSON answer; a response of another shape fails the test showing what came back.

    (It once was a 502 problem: see test_upstream_keepalive.py.)
    """
    body = response.json() if response.headers.get("Content-Type", "").endswith("json") else None
    assert response.status_code == 200 and isinstance(body, dict) and name in body, \
        f"GET {response.url} -> {response.status_code} {response.headers.get('Content-Type')}: {response.text}"
    return body[name]


def _items(response) -> list:
    return _field(response, "items")


def _enrolled_contacts(c, n: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        contact = c.post("/api/v1/contacts", json={"email": f"shopper-{uuid.uuid4().hex[:8]}@shop.example"})
        assert contact.status_code == 201, contact.text
        cid = contact.json()["id"]
        member = wait_until(lambda: (_items(c.get("/api/v1/loyalty/members", params={"contact_id": cid})) or [None])[0],
                            timeout=30, message="auto-enrolment")
        out.append((cid, member["id"]))
    return out


def test_1000_purchases_from_8_clients_with_the_contacts_worker_killed_give_exact_metrics(suite, internal_client):
    key = internal_client.session.headers["Authorization"]
    people = _enrolled_contacts(internal_client, 4)
    rng = random.Random(7)
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    plan = [(people[i % len(people)][0], Decimal(rng.randint(1, 50000)) / 100, base + timedelta(minutes=i))
            for i in range(PURCHASES)]
    expected: dict[str, Decimal] = {}
    for cid, amount, _ in plan:
        expected[cid] = expected.get(cid, Decimal("0")) + amount

    done = 0
    lock = threading.Lock()
    local = threading.local()

    def send(item):
        nonlocal done
        if not hasattr(local, "client"):
            local.client = Client(suite.gateway_url, None)
            local.client.session.headers["Authorization"] = key
        cid, amount, when = item
        r = local.client.post("/api/v1/loyalty/purchases", json={
            "contact_id": cid, "amount": str(amount), "currency": "EUR", "occurred_at": when.isoformat(),
            "external_id": f"r-{uuid.uuid4().hex}"})
        assert r.status_code == 201, r.text
        with lock:
            done += 1

    def saboteur():
        wait_until(lambda: done >= PURCHASES * 3 // 10, timeout=300, interval=0.05, message="30% sent")
        suite.kill("worker:contacts", signal.SIGKILL)
        wait_until(lambda: done >= PURCHASES * 6 // 10, timeout=300, interval=0.05, message="60% sent")
        suite.start("worker:contacts")

    sabotage = threading.Thread(target=saboteur)
    sabotage.start()
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(send, plan))
    finally:
        sabotage.join(60)
        if "worker:contacts" not in suite.procs:
            suite.start("worker:contacts")

    def metrics_complete():
        blocks = {cid: _field(internal_client.get(f"/api/v1/contacts/{cid}"), "purchases") for cid, _ in people}
        return blocks if sum(b["count"] for b in blocks.values()) >= PURCHASES else None

    blocks = wait_until(metrics_complete, timeout=180, message="every purchase reflected on the contacts")
    for cid, _member in people:
        totals = {t["currency"]: Decimal(t["amount"]) for t in blocks[cid]["total_spend"]}
        assert totals == {"EUR": expected[cid]}, cid
        assert blocks[cid]["count"] == sum(1 for p in plan if p[0] == cid)


def test_the_same_purchase_sent_5_times_earns_points_once(suite, internal_client):
    (cid, member_id), = _enrolled_contacts(internal_client, 1)
    body = {"contact_id": cid, "amount": "42.00", "currency": "EUR",
            "occurred_at": "2026-11-20T10:00:00+00:00", "external_id": f"till-{uuid.uuid4().hex}"}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    with ThreadPoolExecutor(5) as pool:
        statuses = sorted(pool.map(lambda _: internal_client.post("/api/v1/loyalty/purchases", json=body).status_code, range(5)))
    assert set(statuses) <= {200, 201}
    assert statuses.count(201) == 1
    replays = [internal_client.post("/api/v1/loyalty/purchases", json=body, headers=key).status_code for _ in range(5)]
    assert set(replays) <= {200, 201}
    assert _field(internal_client.get(f"/api/v1/loyalty/members/{member_id}"), "balance") == 42
    assert len(_items(internal_client.get(f"/api/v1/loyalty/members/{member_id}/transactions"))) == 1
    wait_until(lambda: _field(internal_client.get(f"/api/v1/contacts/{cid}"), "purchases")["count"] == 1,
               timeout=30, message="one purchase on the contact")
