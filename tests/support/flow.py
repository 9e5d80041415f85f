"""A flow of lead conversions and purchases through the suite, and the exact effects it must leave behind.

Shared by the reliability tests that disturb the suite while the flow runs (worker replicas killed and restarted,
PostgreSQL restarted): whatever happened, once the suite has drained, every effect is there exactly once.
"""
from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from decimal import ROUND_FLOOR, Decimal

from tests.support.drain import assert_drained, sql, wait_drained
from tests.support.suite import wait_until


def points_of(amount: Decimal) -> int:
    """The default program's points: one per whole euro, rounded down (plugins/builtin/loyalty_points.py)."""
    return int(amount.to_integral_value(rounding=ROUND_FLOOR))


def lead_email(i: int, tag: str) -> str:
    return f"lead-{i}-{tag}@corp.example"


def make_purchases(shoppers: list[str], count: int, tag: str, *, seed: int) -> list[dict]:
    """`count` purchases in EUR spread over the shoppers, each with its own till id and minute."""
    rng = random.Random(seed)
    base = datetime(2026, 3, 1, tzinfo=timezone.utc)
    return [{"contact_id": shoppers[i % len(shoppers)], "amount": str(Decimal(rng.randint(1, 50000)) / 100),
             "currency": "EUR", "occurred_at": (base + timedelta(minutes=i)).isoformat(),
             "external_id": f"till-{tag}-{i}"} for i in range(count)]


def wait_settled(suite, *, tag: str, leads: int, purchases: int, timeout: float) -> None:
    """Until every lead is linked to its contact, every purchase is on the contacts, and the suite drained."""
    dbs = suite.database_urls
    converted = f"lead-%-{tag}@corp.example"  # every lead_email of the flow
    wait_until(lambda: sql(dbs["leads"], "SELECT count(*) FROM leads WHERE status = 'converted' AND contact_id IS NOT "
                                         "NULL AND email_normalized LIKE %s", converted)[0][0] == leads,
               timeout=timeout, interval=0.5, message=f"{leads} leads linked to their contacts")
    wait_until(lambda: sql(dbs["contacts"], "SELECT coalesce(sum(purchase_count), 0) FROM contact_purchase_summary")
               [0][0] == purchases, timeout=timeout, interval=0.5, message=f"{purchases} purchases on the contacts")
    wait_drained(dbs, suite.vhost, timeout=timeout)
    for name, proc in suite.procs.items():
        assert proc.poll() is None, f"{name} exited:\n{suite.log_tail(name)}"


def assert_exact(suite, client, *, tag: str, leads: list[str], shoppers: list[str], purchases: list[dict]) -> None:
    """Every effect of the flow exactly once: contacts, links, enrolments, points, purchase metrics; nothing left."""
    dbs = suite.database_urls
    converted = f"lead-%-{tag}@corp.example"  # every lead_email of the flow
    # Every converted lead has exactly one contact, and no contact is duplicated.
    links = dict(sql(dbs["leads"], "SELECT id, contact_id FROM leads WHERE email_normalized LIKE %s", converted))
    assert len(links) == len(leads) and set(links) == {uuid.UUID(i) for i in leads}
    contacts = sql(dbs["contacts"], "SELECT id, origin_lead_id, email_normalized FROM contacts "
                                    "WHERE email_normalized LIKE %s", converted)
    assert len(contacts) == len(leads)
    assert len({email for _id, _lead, email in contacts}) == len(leads)
    assert {lead: contact for contact, lead, _email in contacts} == links
    # One crm.contact.created per contact, published once from the outbox (two relays never both claim a row).
    created = sql(dbs["contacts"], "SELECT count(*), count(DISTINCT subject_id) FROM ("
                                   "SELECT payload::json->>'subject' AS subject_id FROM outbox "
                                   "WHERE event_type = 'crm.contact.created') c")[0]
    assert created == (len(leads) + len(shoppers),) * 2
    # Every new contact is enrolled in the default program exactly once (the unique key forbids twice).
    members = Counter(row[0] for row in sql(dbs["loyalty"], "SELECT contact_id FROM members"))
    assert set(members) == {c for c, _l, _e in contacts} | {uuid.UUID(s) for s in shoppers}
    assert set(members.values()) == {1}

    # Loyalty points and the contacts' purchase metrics are exact, per shopper.
    expected_points, expected_spend = Counter(), defaultdict(Decimal)
    expected_count, occurred = Counter(), defaultdict(list)
    for p in purchases:
        cid = uuid.UUID(p["contact_id"])
        expected_points[cid] += points_of(Decimal(p["amount"]))
        expected_spend[cid] += Decimal(p["amount"])
        expected_count[cid] += 1
        occurred[cid].append(datetime.fromisoformat(p["occurred_at"]))
    ledger = {row[0]: (row[1], row[2]) for row in sql(dbs["loyalty"], """
        SELECT m.contact_id, count(*), sum(e.points) FROM ledger_entries e JOIN members m ON m.id = e.member_id
        WHERE e.kind = 'earn' GROUP BY m.contact_id""")}
    assert ledger == {cid: (expected_count[cid], expected_points[cid]) for cid in expected_count}
    assert sql(dbs["loyalty"], "SELECT count(*), count(DISTINCT external_id) FROM purchases") == [(len(purchases),) * 2]
    for cid in expected_count:
        block = client.get(f"/api/v1/contacts/{cid}").json()["purchases"]
        assert block["count"] == expected_count[cid], cid
        assert {t["currency"]: Decimal(t["amount"]) for t in block["total_spend"]} == {"EUR": expected_spend[cid]}
        assert datetime.fromisoformat(block["first_purchase_at"]) == min(occurred[cid])
        assert datetime.fromisoformat(block["last_purchase_at"]) == max(occurred[cid])
        member = client.get("/api/v1/loyalty/members", params={"contact_id": str(cid)}).json()["items"]
        assert [(m["balance"], m["lifetime_points"]) for m in member] == [(expected_points[cid],) * 2]

    # Nothing was retried into a dead letter or left behind: the drain holds.
    assert_drained(dbs, suite.vhost)
