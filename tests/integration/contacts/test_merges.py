"""Merging two contacts on the real PostgreSQL: dry run, what moves, exact metrics, tombstones, races, scopes."""
from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from services.contacts import purchase_facts
from services.contacts.merges import COMBINED, MOVED, moved_tables
from services.contacts.models import (
    ConsentChange,
    Contact,
    ContactLead,
    ContactMerge,
    ContactPurchase,
    ContactPurchaseMetric,
    ContactPurchaseSummary,
    Feedback,
    Interaction,
)
from services.contacts.timeline import add_entries, entry
from tests.support.auth import identity_headers
from tests.support.spend import spend_line

pytestmark = pytest.mark.integration

BASE = "/api/v1/contacts"
MERGES = f"{BASE}/merges"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
MERGER = identity_headers("contacts:read", "contacts:write", "contacts:merge")


def _create(client, email, **fields) -> uuid.UUID:
    response = client.post(BASE, json={"email": email, **fields}, headers=MERGER)
    assert response.status_code == 201, response.json
    return uuid.UUID(response.json["id"])


def _set(runtime, contact_id, **values):
    with runtime.session_factory() as s, s.begin():
        s.execute(update(Contact).where(Contact.id == contact_id).values(**values))


def _purchase(runtime, contact_id, amount: str, currency: str, at: datetime):
    purchase_facts.record_purchase(runtime.uow(), {
        "purchase_id": uuid.uuid4(), "contact_id": contact_id, "amount": Decimal(amount), "currency": currency,
        "occurred_at": at})


def _history(runtime, contact_id, n: int = 1):
    """n rows in every other moved table, all naming `contact_id`."""
    with runtime.session_factory() as s, s.begin():
        for i in range(n):
            s.add_all([
                ContactLead(lead_id=uuid.uuid4(), contact_id=contact_id),
                Interaction(contact_id=contact_id, type="call", occurred_at=T0, summary="called", recorded_by="k"),
                ConsentChange(contact_id=contact_id, channel="email", purpose="marketing", status="granted",
                              occurred_at=T0, source="web", current=True, recorded_by="k"),
                Feedback(contact_id=contact_id, kind="nps", score=9, occurred_at=T0, recorded_by="k"),
            ])
            add_entries(s, [entry(id=uuid.uuid4(), kind="interaction", occurred_at=T0 + timedelta(minutes=i),
                                  source="contacts", contact_id=contact_id)])


def _rows_by_table(runtime, contact_id) -> dict[str, int]:
    with runtime.session_factory() as s:
        return {table.name: s.scalar(select(func.count()).select_from(table).where(table.c.contact_id == contact_id))
                for table in moved_tables()}


def _merge(client, survivor, merged, headers=MERGER, **kw):
    return client.post(MERGES, json={"survivor_id": str(survivor), "merged_id": str(merged), **kw}, headers=headers)


def _problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.json


@pytest.fixture
def pair(client, runtime):
    """A survivor and a duplicate with fields, consents, tags, attributes, purchases and history of their own."""
    survivor = _create(client, "ann@example.com", first_name="Ann", company=None, phone=None)
    merged = _create(client, "ann.lee@gmail.com", first_name="Annie", last_name="Lee", company="Acme",
                     phone="+49 30 1234567")
    account = uuid.uuid4()
    _set(runtime, survivor, tags=["vip"], attributes={"size": "L"},
         consents={"email:marketing": {"status": "granted", "occurred_at": T0.isoformat(), "source": "web",
                                       "text_version": "v1"},
                   "sms:marketing": {"status": "granted", "occurred_at": T0.isoformat(), "source": "web",
                                     "text_version": None}})
    _set(runtime, merged, account_id=account, tags=["newsletter", "vip"], attributes={"size": "M", "shoe": 38},
         consents={"email:marketing": {"status": "withdrawn", "occurred_at": (T0 + timedelta(days=1)).isoformat(),
                                       "source": "call", "text_version": None},
                   "sms:marketing": {"status": "withdrawn", "occurred_at": T0.isoformat(), "source": "call",
                                     "text_version": None}})
    _purchase(runtime, survivor, "10.10", "EUR", T0 + timedelta(days=5))
    _purchase(runtime, survivor, "5.00", "USD", T0 + timedelta(days=6))
    _purchase(runtime, merged, "0.0001", "EUR", T0 + timedelta(days=9))
    _purchase(runtime, merged, "7.50", "GBP", T0 + timedelta(days=1))
    _history(runtime, survivor, 1)
    _history(runtime, merged, 2)
    return survivor, merged, account


def test_a_dry_run_shows_the_outcome_and_changes_nothing(client, runtime, store, pair):
    survivor, merged, account = pair
    before = (store.contacts(), _rows_by_table(runtime, survivor), _rows_by_table(runtime, merged), store.events())
    response = client.post(f"{MERGES}?dry_run=true", json={"survivor_id": str(survivor), "merged_id": str(merged)},
                           headers=MERGER)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["dry_run"] is True and body["merged_at"] is None
    # Every table a merge moves or combines is counted; the ones the merged contact has rows in, exactly.
    assert set(body["moved"]) == MOVED | COMBINED
    assert {table: n for table, n in body["moved"].items() if n} == {
        "contact_purchases": 2, "timeline_entries": 2, "contact_leads": 2, "interactions": 2, "consent_changes": 2,
        "feedback": 2, "contact_purchase_summary": 1, "contact_purchase_metrics": 2}
    contact = body["contact"]
    assert (contact["first_name"], contact["last_name"], contact["company"]) == ("Ann", "Lee", "Acme")
    assert contact["account_id"] == str(account) and contact["tags"] == ["newsletter", "vip"]
    assert contact["purchases"]["count"] == 4
    after = (store.contacts(), _rows_by_table(runtime, survivor), _rows_by_table(runtime, merged), store.events())
    assert [(c.id, c.version, c.first_name) for c in after[0]] == [(c.id, c.version, c.first_name) for c in before[0]]
    assert after[1:] == before[1:]
    with runtime.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(ContactMerge)) == 0
    # The body flag works as the query flag does.
    assert _merge(client, survivor, merged, dry_run=True).json["moved"] == body["moved"]


def test_merging_moves_everything_to_the_survivor_and_keeps_the_best_values(client, runtime, store, pair):
    survivor, merged, account = pair
    dry = _merge(client, survivor, merged, dry_run=True).json
    response = _merge(client, survivor, merged)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["dry_run"] is False and body["merged_by"] == "test-key" and body["merged_at"]
    assert body["moved"] == dry["moved"] and body["filled"] == dry["filled"]
    assert body["filled"] == ["account_id", "attributes", "company", "consents", "last_name", "phone", "tags"]
    assert {k: v for k, v in body["contact"].items() if k != "updated_at"} == {
        k: v for k, v in dry["contact"].items() if k != "updated_at"}

    [kept] = store.contacts()
    assert kept.id == survivor and kept.version == 2 and kept.email == "ann@example.com"
    # The survivor's non-empty values win; its empty ones are filled from the merged contact.
    assert (kept.first_name, kept.last_name, kept.company, kept.phone) == ("Ann", "Lee", "Acme", "+49 30 1234567")
    assert kept.account_id == account and kept.tags == ["newsletter", "vip"]
    assert kept.attributes == {"size": "L", "shoe": 38}
    # Per channel and purpose the newer statement wins; at equal times the withdrawal.
    assert kept.consents["email:marketing"]["status"] == "withdrawn"
    assert kept.consents["email:marketing"]["source"] == "call"
    assert kept.consents["sms:marketing"]["status"] == "withdrawn"

    assert _rows_by_table(runtime, merged) == dict.fromkeys(MOVED, 0)
    assert {table: n for table, n in _rows_by_table(runtime, survivor).items() if n} == {
        "contact_purchases": 4, "timeline_entries": 3, "contact_leads": 3, "interactions": 3,
        "consent_changes": 3, "feedback": 3}
    with runtime.session_factory() as s:
        [tombstone] = s.scalars(select(ContactMerge))
        assert (tombstone.merged_id, tombstone.survivor_id, tombstone.merged_by) == (merged, survivor, "test-key")
        assert tombstone.moved == body["moved"]

    merged_events = store.events("crm.contact.merged")
    assert [e["data"] for e in merged_events] == [{"survivor_id": str(survivor), "merged_id": str(merged),
                                                   "previously_merged_ids": []}]
    [updated] = [e for e in store.events("crm.contact.updated") if e["data"]["version"] == 2]
    assert updated["data"]["contact_id"] == str(survivor) and updated["data"]["changed"] == body["filled"]


def test_purchase_metrics_are_combined_exactly(client, runtime, pair):
    survivor, merged, _account = pair
    assert _merge(client, survivor, merged).status_code == 200
    details = client.get(f"{BASE}/{survivor}", headers=MERGER).json["purchases"]
    assert details == {
        "count": 4,
        "first_purchase_at": (T0 + timedelta(days=1)).isoformat(),
        "last_purchase_at": (T0 + timedelta(days=9)).isoformat(),
        "total_spend": [spend_line("EUR", "10.1001", 2),
                        spend_line("GBP", "7.5000", 1),
                        spend_line("USD", "5.0000", 1)],
    }
    with runtime.session_factory() as s:
        for model in (ContactPurchaseSummary, ContactPurchaseMetric, ContactPurchase):
            assert s.scalar(select(func.count()).select_from(model).where(model.contact_id == merged)) == 0
    # A purchase counted later for the survivor adds to the combined figures.
    _purchase(runtime, survivor, "1.00", "GBP", T0 + timedelta(days=10))
    spend = client.get(f"{BASE}/{survivor}", headers=MERGER).json["purchases"]["total_spend"]
    assert spend_line("GBP", "8.5000", 2) in spend


def test_a_merge_into_a_contact_without_purchases_moves_the_metrics_over(client, runtime):
    survivor = _create(client, "a@example.com")
    merged = _create(client, "b@example.com")
    _purchase(runtime, merged, "3.3333", "EUR", T0)
    assert _merge(client, survivor, merged).json["moved"]["contact_purchase_metrics"] == 1
    purchases = client.get(f"{BASE}/{survivor}", headers=MERGER).json["purchases"]
    assert purchases["count"] == 1 and purchases["total_spend"] == [
        spend_line("EUR", "3.3333", 1)]


def test_a_merged_id_sends_reads_to_the_survivor_and_refuses_writes(client, pair):
    survivor, merged, _account = pair
    assert _merge(client, survivor, merged).status_code == 200
    read = client.get(f"{BASE}/{merged}", headers=MERGER)
    assert _problem(read, 301)["survivor_id"] == str(survivor)
    assert read.headers["Location"] == f"{BASE}/{survivor}"
    upper = client.get(f"{BASE}/{str(merged).upper()}", headers=MERGER)
    assert upper.status_code == 301 and upper.headers["Location"] == f"{BASE}/{survivor}"
    listed = client.get(f"{BASE}/duplicates?contact_id={merged}&limit=5", headers=MERGER)
    assert listed.status_code == 301
    assert listed.headers["Location"] == f"{BASE}/duplicates?contact_id={survivor}&limit=5"

    write = client.patch(f"{BASE}/{merged}", json={"company": "X"}, headers=MERGER)
    problem = _problem(write, 410)
    assert problem["survivor_id"] == str(survivor) and "Location" not in write.headers
    # A key that may write but not read learns that the contact is gone, not which one it became.
    blind = _problem(client.patch(f"{BASE}/{merged}", json={"company": "X"},
                                  headers=identity_headers("contacts:write")), 410)
    assert "survivor_id" not in blind and str(survivor) not in blind["detail"]


def test_a_chain_of_merges_ends_at_the_last_survivor(client, store):
    a, b, c, d = (_create(client, f"{name}@example.com") for name in "abcd")
    assert _merge(client, b, a).status_code == 200
    assert _merge(client, c, d).status_code == 200
    assert _merge(client, c, b).status_code == 200
    response = client.get(f"{BASE}/{a}", headers=MERGER)
    assert _problem(response, 301)["survivor_id"] == str(c)
    assert response.headers["Location"] == f"{BASE}/{c}"
    # The last merge names the id merged into b before, so other services re-point it too, in any order.
    last = store.events("crm.contact.merged")[-1]["data"]
    assert last == {"survivor_id": str(c), "merged_id": str(b), "previously_merged_ids": [str(a)]}


def test_refusals_name_the_reason_and_change_nothing(client, store):
    a = _create(client, "a@example.com")
    b = _create(client, "b@example.com")
    same = _problem(_merge(client, a, a), 422)
    assert "merged_id" in same["errors"]
    unknown = uuid.uuid4()
    assert _problem(_merge(client, a, unknown), 404)["detail"].endswith(f"{unknown}.")
    assert _problem(_merge(client, unknown, a), 404)
    missing = _problem(client.post(MERGES, json={"survivor_id": str(a)}, headers=MERGER), 422)
    assert "merged_id" in missing["errors"]
    assert _problem(client.post(MERGES, json={"survivor_id": str(a), "merged_id": "x"}, headers=MERGER),
                    422)["errors"].keys() == {"merged_id"}
    assert len(store.contacts()) == 2 and store.events("crm.contact.merged") == []
    assert _merge(client, a, b).status_code == 200
    again = _problem(_merge(client, a, b), 410)
    assert again["survivor_id"] == str(a)
    into_merged = _problem(_merge(client, b, a), 410)
    assert into_merged["survivor_id"] == str(a)


def test_merges_need_the_merge_scope_which_contacts_star_does_not_grant(client, store):
    a = _create(client, "a@example.com")
    b = _create(client, "b@example.com")
    for headers in (identity_headers("contacts:*"), identity_headers("contacts:read", "contacts:write"),
                    identity_headers("contacts:read")):
        _problem(_merge(client, a, b, headers=headers), 403)
    _problem(client.get(f"{BASE}/duplicates", headers=identity_headers("contacts:write")), 403)
    assert len(store.contacts()) == 2
    assert _merge(client, a, b, headers=identity_headers("contacts:merge", "contacts:read")).status_code == 200
    assert client.get(f"{BASE}/duplicates", headers=identity_headers("contacts:*")).status_code == 200


def test_a_merge_under_an_idempotency_key_is_replayed(client, store):
    a = _create(client, "a@example.com")
    b = _create(client, "b@example.com")
    headers = {**MERGER, "Idempotency-Key": "merge-1"}
    first = _merge(client, a, b, headers=headers)
    second = _merge(client, a, b, headers=headers)
    assert first.status_code == second.status_code == 200
    assert second.json == first.json and second.headers.get("Idempotent-Replayed") == "true"
    assert len(store.events("crm.contact.merged")) == 1


def test_two_merges_of_one_pair_at_once_let_exactly_one_win(app, store):
    for round_ in range(3):
        client = app.test_client()
        a = _create(client, f"a{round_}@example.com")
        b = _create(client, f"b{round_}@example.com")
        barrier = threading.Barrier(2)
        responses = {}

        def merge(survivor, merged, barrier=barrier, responses=responses):
            barrier.wait()
            responses[(survivor, merged)] = _merge(app.test_client(), survivor, merged)

        threads = [threading.Thread(target=merge, args=args) for args in ((a, b), (b, a))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        codes = sorted(r.status_code for r in responses.values())
        assert codes == [200, 410], [r.get_data(as_text=True) for r in responses.values()]
        [(winner, loser)] = [pair for pair, r in responses.items() if r.status_code == 200]
        [refused] = [r for r in responses.values() if r.status_code == 410]
        assert refused.json["survivor_id"] == str(winner)
        remaining = {c.id for c in store.contacts()}
        assert winner in remaining and loser not in remaining
    assert len(store.events("crm.contact.merged")) == 3


def test_a_merging_key_without_read_gets_a_receipt_not_the_record(client, store):
    a = _create(client, "a@example.com", company="Acme")
    b = _create(client, "b@example.com", phone="+49 30 1234567")
    response = _merge(client, a, b, headers=identity_headers("contacts:merge"))
    assert response.status_code == 200
    assert set(response.json) == {"survivor_id", "merged_id", "dry_run", "merged_at", "merged_by"}
    assert "+49" not in response.get_data(as_text=True)
    assert [c.id for c in store.contacts()] == [a]
