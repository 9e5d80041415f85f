"""`sort=` on the leads, loyalty and partners lists, on PostgreSQL: every row once in the asked order, nulls last."""
from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from services.common.pagination import encode_cursor
from tests.support.auth import identity_headers
from tests.support.sorting import expected_order, walk

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _stored(app, rows: list) -> list:
    """Insert `rows` in one transaction; returns them, loaded, with their sequence numbers."""
    runtime = app.extensions["crm.runtime"]
    with runtime.session_factory(expire_on_commit=False) as s, s.begin():
        s.add_all(rows)
    return rows


def _all(app, model) -> list:
    """Every row of `model`'s table, including those the migrations made (loyalty's default program)."""
    with app.extensions["crm.runtime"].session_factory() as s:
        return list(s.scalars(select(model)))


def _ids(items) -> list[str]:
    return [str(i["id"]) for i in items]


def _in_order(rows, name, *, descending, value=None) -> list[str]:
    key = value or (lambda r: getattr(r, name))
    return [str(r.id) for r in expected_order(rows, key, lambda r: r.seq, descending=descending)]


def _refused_sort(client, url, headers) -> str:
    r = client.get(url, headers=headers, query_string={"sort": "no_such_field"})
    assert r.status_code == 422 and r.content_type.startswith("application/problem+json")
    [message] = r.json["errors"]["sort"]
    return message


# -- leads -------------------------------------------------------------------------------------------------

@pytest.fixture
def leads_app(service_app):
    return service_app("leads")


@pytest.fixture
def leads(leads_app):
    from services.leads.models import Lead

    return _stored(leads_app, [
        Lead(email=f"l{(i * 7) % 11:02d}@example.com", email_normalized=f"l{(i * 7) % 11:02d}@example.com",
             score=[40, 10, 40, 90, 10, 40][i % 6], status=["new", "contacted", "qualified"][i % 3],
             last_name=None if i % 4 == 2 else ["ng", "adams", "ng"][i % 3],
             company=None if i % 5 == 0 else "acme", created_at=T0 + timedelta(minutes=i // 3),
             updated_at=T0 + timedelta(minutes=(i * 3) % 4))
        for i in range(11)])


@pytest.mark.parametrize("name", ["score", "last_name", "created_at", "updated_at", "status", "company", "email"])
@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
def test_leads_sort_by_every_field_in_both_directions(leads_app, leads, name, descending):
    value = (lambda lead: lead.email_normalized) if name == "email" else None

    items, pages = walk(leads_app.test_client(), "/api/v1/leads", identity_headers("leads:read"), limit=3,
                        sort=("-" if descending else "") + name)

    assert _ids(items) == _in_order(leads, name, descending=descending, value=value)
    assert pages == 4


def test_leads_sort_within_a_filter_and_keep_newest_first_without_a_sort(leads_app, leads):
    client, headers = leads_app.test_client(), identity_headers("leads:read")

    best, _ = walk(client, "/api/v1/leads", headers, limit=2, sort="-score", status="new")
    newest, _ = walk(client, "/api/v1/leads", headers, limit=4)

    assert _ids(best) == _in_order([lead for lead in leads if lead.status == "new"], "score", descending=True)
    assert _ids(newest) == [str(lead.id) for lead in sorted(leads, key=lambda lead: lead.seq, reverse=True)]
    assert "-score" in _refused_sort(client, "/api/v1/leads", headers)


def test_a_leads_cursor_from_another_sort_or_from_before_sort_is_refused_under_a_sort(leads_app, leads):
    client, headers = leads_app.test_client(), identity_headers("leads:read")
    by_score = client.get("/api/v1/leads", headers=headers, query_string={"limit": 2, "sort": "score"}).json

    for sort, cursor in (("-score", by_score["next_cursor"]), ("score", encode_cursor(leads[3].seq))):
        r = client.get("/api/v1/leads", headers=headers, query_string={"sort": sort, "cursor": cursor})
        assert r.status_code == 422 and "cursor" in r.json["errors"]


# -- loyalty -----------------------------------------------------------------------------------------------

@pytest.fixture
def loyalty_app(service_app):
    return service_app("loyalty")


def test_loyalty_programs_members_and_a_ledger_sort_with_nulls_last(loyalty_app):
    from services.loyalty.models import LedgerEntry, Member, Program

    client, headers = loyalty_app.test_client(), identity_headers("loyalty:read")
    _stored(loyalty_app, [
        Program(code=f"p{(i * 3) % 7}", name=["gold", "blue", "gold"][i % 3], currency="EUR",
                points_per_unit=Decimal(1), created_at=T0 + timedelta(minutes=i // 2)) for i in range(7)])
    programs = _all(loyalty_app, Program)
    members = _stored(loyalty_app, [
        Member(program_id=programs[-1].id, contact_id=uuid.uuid4(), enrolled_via="api",
               tier=None if i % 3 == 1 else ["silver", "bronze"][i % 2], enrolled_at=T0 + timedelta(hours=i % 3))
        for i in range(8)])
    entries = _stored(loyalty_app, [
        LedgerEntry(member_id=members[0].id, kind="adjust", points=[5, -3, 5, 12][i % 4], balance_after=0)
        for i in range(6)])

    for sort in ("name", "-name", "code", "-created_at", "created_at"):
        items, _ = walk(client, "/api/v1/loyalty/programs", headers, limit=3, sort=sort)
        assert _ids(items) == _in_order(programs, sort.lstrip("-"), descending=sort.startswith("-")), sort
    for sort in ("tier", "-tier", "enrolled_at", "-enrolled_at"):
        items, _ = walk(client, "/api/v1/loyalty/members", headers, limit=3, sort=sort)
        assert _ids(items) == _in_order(members, sort.lstrip("-"), descending=sort.startswith("-")), sort
        assert all("balance" in item for item in items)
    for sort in ("points", "-points"):
        items, _ = walk(client, f"/api/v1/loyalty/members/{members[0].id}/transactions", headers, limit=4,
                        sort=sort)
        assert _ids(items) == _in_order(entries, "points", descending=sort.startswith("-")), sort
    newest, _ = walk(client, "/api/v1/loyalty/members", headers, limit=5)
    assert _ids(newest) == [str(m.id) for m in reversed(members)]
    assert "-enrolled_at" in _refused_sort(client, "/api/v1/loyalty/members", headers)
    assert "-points" in _refused_sort(client, f"/api/v1/loyalty/members/{members[0].id}/transactions", headers)


# -- partners ----------------------------------------------------------------------------------------------

@pytest.fixture
def partners_app(service_app):
    return service_app("partners")


def _terms(contract_id, version: int, *, discount: str, effective_to: date | None):
    from services.partners.models import ContractTerms

    return ContractTerms(contract_id=contract_id, version=version, payment_terms_days=30,
                         discount_percent=Decimal(discount), delivery_lead_time_days=7,
                         minimum_order_volume=Decimal(100), currency="EUR", effective_from=date(2026, 1, version),
                         effective_to=effective_to, auto_renew=False, notice_period_days=0)


def test_partners_sort_by_name_and_country_with_nulls_last(partners_app):
    from services.partners.models import Partner

    client, headers = partners_app.test_client(), identity_headers("partners:read")
    partners = _stored(partners_app, [
        Partner(name=["north", "east", "north", "west"][i % 4], type="supplier", status="active",
                country=None if i % 3 == 0 else ["de", "fr"][i % 2], created_at=T0 + timedelta(minutes=i // 4))
        for i in range(9)])

    for sort in ("name", "-name", "country", "-country", "created_at", "-created_at"):
        items, pages = walk(client, "/api/v1/partners", headers, limit=2, sort=sort)
        assert _ids(items) == _in_order(partners, sort.lstrip("-"), descending=sort.startswith("-")), sort
        assert pages == 5
    assert "-country" in _refused_sort(client, "/api/v1/partners", headers)


def test_contracts_sort_by_their_terms_in_force_and_a_terms_history_by_a_term(partners_app):
    from services.partners.models import Contract, Partner

    client, headers = partners_app.test_client(), identity_headers("partners:read")
    [partner] = _stored(partners_app, [Partner(name="acme", type="supplier", status="active")])
    contracts = _stored(partners_app, [Contract(partner_id=partner.id, title=f"c{i % 3}", current_version=2)
                                       for i in range(7)])
    ends = [date(2026, 6, 1), None, date(2026, 3, 1), date(2026, 6, 1), None, date(2026, 9, 1), date(2026, 3, 1)]
    # Version 1 of each ends otherwise: only the terms in force (version 2) may order the list.
    _stored(partners_app, [_terms(c.id, 1, discount="9.00", effective_to=date(2030, 1, 1)) for c in contracts]
            + [_terms(c.id, 2, discount="1.00", effective_to=end) for c, end in zip(contracts, ends)])
    end_of = dict(zip((c.id for c in contracts), ends))

    for sort in ("effective_to", "-effective_to", "title", "-title"):
        items, _ = walk(client, f"/api/v1/partners/{partner.id}/contracts", headers, limit=3, sort=sort)
        value = (lambda c: end_of[c.id]) if "effective_to" in sort else None
        assert _ids(items) == _in_order(contracts, sort.lstrip("-"), descending=sort.startswith("-"),
                                        value=value), sort
        assert {i["terms"]["version"] for i in items} == {2}

    # Three more versions of the first contract, two with the same discount: they tie, and the later comes after.
    _stored(partners_app, [_terms(contracts[0].id, v, discount=d, effective_to=None)
                           for v, d in ((3, "4.00"), (4, "0.50"), (5, "4.00"))])
    terms_url = f"/api/v1/contracts/{contracts[0].id}/terms"
    for descending in (False, True):
        items, _ = walk(client, terms_url, headers, limit=2, sort=("-" if descending else "") + "discount_percent")
        shown = [(Decimal(i["discount_percent"]), i["version"]) for i in items]
        assert shown == sorted([(Decimal("9.00"), 1), (Decimal("1.00"), 2), (Decimal("4.00"), 3),
                                (Decimal("0.50"), 4), (Decimal("4.00"), 5)], reverse=descending)
    newest, _ = walk(client, terms_url, headers, limit=2)
    assert [i["version"] for i in newest] == [5, 4, 3, 2, 1]
    assert "-discount_percent" in _refused_sort(client, terms_url, headers)
