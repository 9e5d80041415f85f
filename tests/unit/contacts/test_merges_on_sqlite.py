"""Duplicates and merges on an in-memory SQLite database: the SQL of both runs there as on PostgreSQL."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from services.common.problems import Moved
from services.contacts import duplicates, merges, purchase_facts, service
from services.contacts.models import (
    Contact,
    ContactMerge,
)


def _create(rt, email, **fields):
    return service.create_contact(rt.uow(), {"email": email, **fields}).id


def test_duplicates_are_found_with_the_same_keys_on_sqlite(runtime):
    ann = _create(runtime, "ann.lee@gmail.com", first_name="Ann", last_name="Lee")
    annlee = _create(runtime, "annlee+crm@googlemail.com")
    _create(runtime, "bob@a.example", phone="+49 30 1234567", first_name="Bob", last_name="Bo", company="Acme")
    _create(runtime, "bob@b.example", phone="030 1234567", first_name="bob", last_name="bo", company="acme")
    page = duplicates.list_duplicates(runtime.uow(read_only=True), limit=10, region="DE")
    summary = [(item["score"], [r["code"] for r in item["reasons"]]) for item in page["items"]]
    assert summary == [(96, ["same_phone", "same_name_and_company", "same_local_part"]),
                       (95, ["same_gmail_address"])]
    one = duplicates.list_duplicates(runtime.uow(read_only=True), limit=10, contact_id=annlee)
    assert [[c.id for c in item["contacts"]] for item in one["items"]] == [[ann, annlee]]


def test_a_merge_folds_everything_into_the_survivor_on_sqlite(runtime):
    survivor = _create(runtime, "a@example.com")
    merged = _create(runtime, "b@example.com", company="Acme")
    at = datetime(2026, 3, 1, tzinfo=UTC)
    for contact_id, amount in ((survivor, "1.0001"), (merged, "2.0002")):
        purchase_facts.record_purchase(runtime.uow(), {"purchase_id": uuid.uuid4(),
                                                        "contact_id": contact_id, "amount": Decimal(amount),
                                                        "currency": "EUR", "occurred_at": at, "margin": Decimal(1)})
    purchase_facts.record_facts(runtime.uow(), returns=[({
        "return_id": uuid.uuid4(), "purchase_id": uuid.uuid4(), "contact_id": merged, "amount": Decimal("0.5"),
        "margin": Decimal("0.25"), "currency": "EUR", "occurred_at": at}, None)])
    outcome = merges.merge_contacts(runtime.uow(), survivor, merged, actor="k")
    assert outcome["contact"]["company"] == "Acme"
    assert outcome["moved"]["contact_returns"] == 1
    assert outcome["contact"]["purchases"]["total_spend"] == [{
        "currency": "EUR", "amount": Decimal("3.0003"), "count": 2, "returned": Decimal("0.5"),
        "net": Decimal("2.5003"), "margin": Decimal("1.75"), "discount": 0}]
    details = service.get_contact_details(runtime.uow(read_only=True), survivor)
    assert details["purchases"]["total_spend"] == outcome["contact"]["purchases"]["total_spend"]
    with runtime.session_factory() as s:
        assert [c.id for c in s.scalars(select(Contact))] == [survivor]
        assert s.scalar(select(ContactMerge.survivor_id)) == survivor
    with pytest.raises(Moved):
        service.get_contact(runtime.uow(read_only=True), merged)
