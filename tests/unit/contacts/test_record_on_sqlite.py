"""Accounts, tags and custom attributes on an in-memory SQLite database: the dialect's own SQL (json_each, the
domain without split_part) gives the answers PostgreSQL gives."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from services.common.problems import Conflict, Unprocessable
from services.contacts import accounts, attributes, purchase_facts, service, tags
from services.contacts.models import Contact


def _contact(rt, email, **data):
    return service.create_contact(rt.uow(), {"email": email, **data})


def _listed(rt, **filters) -> list[str]:
    page = service.list_contacts(rt.uow(read_only=True), limit=50, cursor=None, **filters)
    return [c.email for c in page["items"]]


def test_tag_and_attribute_filters_run_on_sqlite(runtime):
    for body in ({"name": "tier", "type": "enum", "options": ["gold", "silver"]}, {"name": "score", "type": "number"},
                 {"name": "vip", "type": "boolean"}):
        attributes.create_definition(runtime.uow(), body)
    _contact(runtime, "a@example.com", tags=["b2b", "vip"], attributes={"tier": "gold", "score": "1.50", "vip": True})
    _contact(runtime, "b@example.com", tags=["vip"], attributes={"tier": "silver", "score": 1, "vip": False})
    _contact(runtime, "c@example.com", attributes={"score": "1"})
    assert _listed(runtime, tag=["vip"]) == ["b@example.com", "a@example.com"]
    assert _listed(runtime, tag=["vip", "b2b"]) == ["a@example.com"]
    assert _listed(runtime, attr={"tier": "gold"}) == ["a@example.com"]
    assert _listed(runtime, attr={"score": "1.5"}) == ["a@example.com"]
    assert _listed(runtime, attr={"score": "1.00"}) == ["c@example.com", "b@example.com"]
    assert _listed(runtime, attr={"vip": "false"}) == ["b@example.com"]
    assert _listed(runtime, attr={"vip": "true", "tier": "gold"}, tag=["b2b"]) == ["a@example.com"]
    with pytest.raises(Unprocessable) as caught:
        _listed(runtime, attr={"nope": "x"})
    assert set(caught.value.extra["errors"]) == {"attr.nope"}


def test_contacts_join_accounts_by_domain_on_sqlite(runtime):
    early = _contact(runtime, '"x@y"@acme.example')
    account = accounts.create_account(runtime.uow(), {"name": "Acme", "domain": "acme.example"})
    late = _contact(runtime, "ann@acme.example")
    [(converted, _)] = service.create_or_match_contacts(runtime.uow(), [{"lead_id": uuid.uuid4(),
                                                                        "email": "bob@acme.example"}])
    with runtime.session_factory() as s:
        found = {c.id: (c.account_id, c.version) for c in s.scalars(select(Contact))}
    assert found == {early.id: (account.id, 2), late.id: (account.id, 1), converted.id: (account.id, 1)}


def test_match_accounts_runs_on_sqlite(runtime):
    account = accounts.create_account(runtime.uow(), {"name": "Acme", "domain": "acme.example"})
    with runtime.session_factory() as s, s.begin():
        rows = [Contact(email=e, email_normalized=e) for e in ("ann@acme.example", "bob@else.example")]
        s.add_all(rows)
    with runtime.session_factory() as s, s.begin():
        accounts.match_accounts(s, [c.id for c in rows])
    with runtime.session_factory() as s:
        assert {c.email: c.account_id for c in s.scalars(select(Contact))} == {
            "ann@acme.example": account.id, "bob@else.example": None}


def test_the_account_roll_up_sums_on_sqlite(runtime):
    account = accounts.create_account(runtime.uow(), {"name": "Acme", "domain": "acme.example"})
    ann, bob = _contact(runtime, "ann@acme.example"), _contact(runtime, "bob@acme.example")
    for contact, amount, day in ((ann, "0.1000", 2), (ann, "0.2000", 4), (bob, "99999999.9999", 3)):
        purchase_facts.record_purchase(runtime.uow(), {
            "purchase_id": uuid.uuid4(), "contact_id": contact.id, "amount": Decimal(amount), "currency": "EUR",
            "occurred_at": datetime(2026, 1, day, tzinfo=timezone.utc)})
    details = accounts.get_account_details(runtime.uow(read_only=True), account.id)
    assert details["contact_count"] == 2 and details["address"]["city"] is None
    assert details["purchases"] == {
        "count": 3, "first_purchase_at": datetime(2026, 1, 2, tzinfo=timezone.utc),
        "last_purchase_at": datetime(2026, 1, 4, tzinfo=timezone.utc),
        "total_spend": [{"currency": "EUR", "amount": Decimal("100000000.2999"), "count": 3, "returned": 0,
                         "net": Decimal("100000000.2999"), "margin": 0, "discount": 0}]}
    assert [c.email for c in details["contacts"]["items"]] == ["bob@acme.example", "ann@acme.example"]


def test_tags_and_a_definition_in_use_on_sqlite(runtime):
    contact = _contact(runtime, "ann@example.com")
    assert tags.add_contact_tags(runtime.uow(), contact.id, ["vip", "b2b"]).tags == ["b2b", "vip"]
    assert tags.remove_contact_tag(runtime.uow(), contact.id, "VIP").tags == ["b2b"]
    attributes.create_definition(runtime.uow(), {"name": "tier", "type": "string"})
    service.update_contact(runtime.uow(), contact.id, {"attributes": {"tier": "gold"}})
    with pytest.raises(Conflict):
        attributes.delete_definition(runtime.uow(), "tier")
    service.update_contact(runtime.uow(), contact.id, {"attributes": {"tier": None}})
    attributes.delete_definition(runtime.uow(), "tier")
    assert attributes.list_definitions(runtime.uow(read_only=True), limit=10, cursor=None)["items"] == []
