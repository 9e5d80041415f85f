"""Partner use cases on SQLite (in memory, and the Alembic migration on a temporary file)."""
from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import inspect, select

from services.common.db import make_engine
from crm.registry import SUITE
from services.common.etags import ANY_VERSION, NO_PRECONDITION, Precondition, PreconditionRequired
from services.common.problems import Conflict, NotFound, PreconditionFailed
from services.common.runtime import build_runtime
from services.common.settings import Settings
from services.partners import service
from services.partners.models import Base, ContractTerms, InboxEntry, OutboxMessage

TERMS = {
    "payment_terms_days": 30, "discount_percent": Decimal("2.5"), "delivery_lead_time_days": 14,
    "minimum_order_volume": Decimal("1000.5"), "currency": "EUR", "effective_from": date(2026, 1, 1),
    "effective_to": date(2026, 12, 31), "auto_renew": True, "notice_period_days": 60,
}


@pytest.fixture
def runtime():
    rt = build_runtime(Settings(service="partners", database_url="sqlite:///:memory:"), OutboxMessage, InboxEntry)
    Base.metadata.create_all(rt.engine)
    yield rt
    rt.engine.dispose()


def _events(rt) -> list[tuple[str, dict]]:
    with rt.session_factory() as s:
        return [(r.event_type, json.loads(r.payload)["data"]) for r in s.scalars(select(OutboxMessage).order_by(OutboxMessage.seq))]


def _contract(rt, **terms) -> dict:
    partner = service.create_partner(rt.uow(), {"name": "Acme", "type": "supplier"})
    return service.create_contract(rt.uow(), partner.id, {"title": "Supply", "terms": {**TERMS, **terms}}, actor="k1")


def test_terms_are_versioned_and_every_version_keeps_its_exact_decimals(runtime):
    contract = _contract(runtime)
    detail, made = service.change_terms(runtime.uow(), contract["id"], {"discount_percent": Decimal("3.75")},
                                        precondition=Precondition.of(1), replace=False, actor="k2")
    assert made and detail["current_version"] == 2
    history = service.list_terms(runtime.uow(), contract["id"])
    assert [(v.version, v.discount_percent, v.minimum_order_volume, v.changed_by) for v in history["items"]] == [
        (2, Decimal("3.75"), Decimal("1000.500"), "k2"), (1, Decimal("2.50"), Decimal("1000.500"), "k1")]
    assert service.get_terms_version(runtime.uow(), contract["id"], 1).discount_percent == Decimal("2.50")
    assert [t for t, _ in _events(runtime)] == ["crm.partner.created", "crm.contract.created", "crm.contract.terms_changed"]
    assert _events(runtime)[-1][1]["changed"] == ["discount_percent"]


def test_a_change_needs_the_version_in_force(runtime):
    cid = _contract(runtime)["id"]
    with pytest.raises(PreconditionRequired) as missing:
        service.change_terms(runtime.uow(), cid, {"payment_terms_days": 45}, precondition=NO_PRECONDITION, replace=False)
    assert missing.value.status == 428
    service.change_terms(runtime.uow(), cid, {"payment_terms_days": 45}, precondition=ANY_VERSION, replace=False)
    with pytest.raises(PreconditionFailed):
        service.change_terms(runtime.uow(), cid, {"payment_terms_days": 60}, precondition=Precondition.of(1),
                             replace=False)
    with runtime.session_factory() as s:
        assert [t.payment_terms_days for t in s.scalars(select(ContractTerms).order_by(ContractTerms.version))] == [30, 45]


def test_replacing_terms_with_the_same_values_makes_no_version(runtime):
    cid = _contract(runtime)["id"]
    detail, made = service.change_terms(runtime.uow(), cid, dict(TERMS), precondition=ANY_VERSION, replace=True)
    assert not made and detail["current_version"] == 1
    assert len(_events(runtime)) == 2


def test_the_portal_functions_find_only_the_callers_records(runtime):
    mine = _contract(runtime)
    theirs = _contract(runtime)
    me = mine["partner_id"]
    assert service.get_own_contract(runtime.uow(), me, mine["id"])["id"] == mine["id"]
    assert [c["id"] for c in service.list_own_contracts(runtime.uow(), me, limit=10, cursor=None)["items"]] == [mine["id"]]
    for find in (service.get_own_contract, service.list_own_terms):
        with pytest.raises(NotFound):
            find(runtime.uow(), me, theirs["id"])
    for no_partner in (None, str(me)):
        with pytest.raises(NotFound):
            service.list_own_contracts(runtime.uow(), no_partner, limit=10, cursor=None)


def test_a_terminated_partner_is_final_and_its_contracts_frozen(runtime):
    contract = _contract(runtime)
    pid = contract["partner_id"]
    service.update_partner(runtime.uow(), pid, {"status": "terminated"})
    with pytest.raises(Conflict):
        service.update_partner(runtime.uow(), pid, {"status": "active"})
    with pytest.raises(Conflict):
        service.change_terms(runtime.uow(), contract["id"], {"payment_terms_days": 45}, precondition=ANY_VERSION,
                             replace=False)
    with pytest.raises(Conflict):
        service.create_contract(runtime.uow(), pid, {"title": "Late", "terms": TERMS})


def test_the_migration_builds_the_schema_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'partners.db'}"
    SUITE.migrate("partners", url)
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"partners", "contracts", "contract_terms", "outbox", "inbox", "alembic_version_partners"} <= tables
    finally:
        engine.dispose()
    rt = build_runtime(Settings(service="partners", database_url=url), OutboxMessage, InboxEntry)
    try:
        assert service.get_contract(rt.uow(), _contract(rt)["id"])["terms"].minimum_order_volume == Decimal("1000.500")
    finally:
        rt.engine.dispose()
