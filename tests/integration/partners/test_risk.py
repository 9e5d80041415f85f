"""GET /api/v1/partners/{id}/risk on PostgreSQL: the history the service builds from deliveries, disputes,
contracts and proposals, the built-in rules' factors on it, a broken plugin degrading the answer visibly, and
the snapshot read in a fixed handful of queries.

Deliveries, disputes and proposals are written straight into their tables (they are facts here, not the
subject); partners and contracts go through the API. Every request names `as_of`, so no result depends on
today's date.
"""
from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from crm_plugins import RiskFactor, hookimpl
from sqlalchemy import event

from services.partners.models import Delivery, Dispute, Proposal
from tests.integration.partners.conftest import READ, FreshIdentity

pytestmark = pytest.mark.integration

AS_OF = "2026-06-15"
MARKER = "LEAKED-7d2f0a"  # would show up in a body if a plugin's exception text were returned


def _risk(client, partner_id, as_of=AS_OF, headers=READ):
    return client.get(f"/api/v1/partners/{partner_id}/risk", query_string={"as_of": as_of}, headers=headers)


class Facts:
    """Writes deliveries, disputes and proposals as the other parts of the service would have."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.orders = 0

    def add(self, *rows) -> None:
        with self.runtime.session_factory() as s:
            s.add_all(rows)
            s.commit()

    def delivery(self, partner_id, promised: date, *, late_days: int | None = 0, rejected="0", amount="1000.00",
                 currency="EUR") -> Delivery:
        self.orders += 1
        delivered = None if late_days is None else promised + timedelta(days=late_days)
        return Delivery(partner_id=uuid.UUID(partner_id), order_reference=f"PO-{self.orders}", promised_on=promised,
                        delivered_on=delivered, quantity_ordered=Decimal("100"), quantity_delivered=Decimal("100"),
                        quantity_rejected=Decimal(rejected), amount=Decimal(amount), currency=currency)

    @staticmethod
    def dispute(partner_id, category, amount, status="open") -> Dispute:
        return Dispute(partner_id=uuid.UUID(partner_id), category=category, amount=Decimal(amount), currency="EUR",
                       status=status, resolution="credit_note" if status == "resolved" else None,
                       opened_by="internal", opened_at=datetime(2026, 5, 2, 9, 0, tzinfo=timezone.utc))

    @staticmethod
    def proposal(partner_id, contract_id, changes) -> Proposal:
        return Proposal(contract_id=uuid.UUID(contract_id), partner_id=uuid.UUID(partner_id), base_version=1,
                        changes=changes, expires_at=datetime(2026, 7, 1, tzinfo=timezone.utc), status="open",
                        proposed_by="internal")


@pytest.fixture
def facts(app):
    return Facts(app.extensions["crm.runtime"])


@pytest.fixture
def troubled(api, facts):
    """A supplier whose record went bad: falling on-time and quality, two unresolved quality disputes (one
    escalated), 60% of the EUR spend, a contract ending in 77 days and another that an open proposal extends."""
    partner = api.partner("Troubled Metals")
    other = api.partner("Other Supplier")
    expiring = api.contract(partner["id"], title="Bolts 2026", effective_to="2026-08-31", auto_renew=False)
    extended = api.contract(partner["id"], title="Nuts 2026", effective_to="2026-07-31", auto_renew=False)
    rows = []
    for month in (1, 2, 3, 4):  # 20 deliveries, all on time, nothing rejected
        rows += [facts.delivery(partner["id"], date(2026, month, 10 + n)) for n in range(5)]
    for month in (5, 6):  # 10 deliveries, 4 on time, 10% rejected
        rows += [facts.delivery(partner["id"], date(2026, month, 1 + n), late_days=0 if n < 2 else 3, rejected="10")
                 for n in range(5)]
    rows += [
        facts.delivery(partner["id"], date(2026, 6, 20), late_days=None),  # due after as_of: not counted
        facts.delivery(partner["id"], date(2025, 5, 1), amount="99999.00"),  # more than 12 months ago
        facts.delivery(other["id"], date(2026, 3, 3), amount="20000.00"),
        facts.delivery(other["id"], date(2026, 3, 4), amount="500.00", currency="USD"),
        facts.dispute(partner["id"], "quality", "250.00"),
        facts.dispute(partner["id"], "quality", "750.00", status="escalated"),
        facts.dispute(partner["id"], "delay", "100.00", status="resolved"),
        facts.proposal(partner["id"], extended["id"], {"effective_to": "2027-07-31"}),
    ]
    facts.add(*rows)
    return {"partner": partner, "other": other, "expiring": expiring, "extended": extended}


def test_a_partner_with_a_bad_record_is_high_risk_and_every_factor_names_its_plugin_and_evidence(client, troubled):
    r = _risk(client, troubled["partner"]["id"])

    assert r.status_code == 200, r.text
    body = r.json
    assert (body["partner_id"], body["as_of"]) == (troubled["partner"]["id"], AS_OF)
    assert [(f["plugin"], f["code"], f["weight"]) for f in body["factors"]] == [
        ("builtin.partner_risk", "on_time_falling", 20),
        ("builtin.partner_risk", "quality_falling", 15),
        ("builtin.partner_risk", "open_disputes", 15),
        ("builtin.partner_risk", "concentration_high", 20),
        ("builtin.partner_risk", "contract_expiring", 20),
    ]
    reasons = {f["code"]: f["reason"] for f in body["factors"]}
    assert reasons["on_time_falling"] == ("on-time rate fell from 100.0% (2026-01..2026-04, 20 deliveries) "
                                          "to 40.0% (2026-05..2026-06, 10 deliveries)")
    assert reasons["quality_falling"].startswith("quality rate fell from 100.0% (2026-01..2026-04")
    assert reasons["open_disputes"] == "2 unresolved disputes (2 quality) claiming 1000.00 EUR; 1 escalated"
    assert reasons["concentration_high"] == (
        "60.0% of the amount delivered in EUR over the last 12 months (30000.00 of 50000.00)")
    assert "'Bolts 2026' ends on 2026-08-31 (in 77 days)" in reasons["contract_expiring"]
    assert (body["score"], body["level"], body["degraded"]) == (90, "high", [])


def test_a_quiet_partner_is_low_risk_without_factors(client, api, facts):
    partner = api.partner("Quiet Supplies")
    api.contract(partner["id"], effective_to="2027-12-31", auto_renew=False)
    facts.add(*[facts.delivery(partner["id"], date(2026, month, 5)) for month in range(1, 7)],
              facts.delivery(api.partner("Big Other")["id"], date(2026, 2, 2), amount="30000.00"))

    body = _risk(client, partner["id"]).json

    assert (body["score"], body["level"], body["factors"], body["degraded"]) == (0, "low", [], [])


def test_the_contract_stops_counting_once_it_auto_renews_and_the_day_assessed_moves_the_windows(client, troubled, api):
    contract = troubled["expiring"]
    api.change_terms(contract["id"], 1, auto_renew=True)  # its first version

    now = _risk(client, troubled["partner"]["id"]).json
    a_year_on = _risk(client, troubled["partner"]["id"], as_of="2027-06-15").json

    assert "contract_expiring" not in {f["code"] for f in now["factors"]}
    assert now["score"] == 70
    # A year on, no delivery falls in the windows: only the disputes (still unresolved) count.
    assert [f["code"] for f in a_year_on["factors"]] == ["open_disputes"]


class Raising:
    @hookimpl
    def crm_assess_partner_risk(self, partner, history):
        raise RuntimeError(f"risk feed down, token={MARKER}")


class Malformed:
    @hookimpl
    def crm_assess_partner_risk(self, partner, history):
        return [{"code": "dict", "weight": 50, "reason": MARKER}]


class Watchlist:
    @hookimpl
    def crm_assess_partner_risk(self, partner, history):
        if partner.name == "Troubled Metals":
            return RiskFactor("watchlist", 5, f"{partner.name} is on the purchasing watchlist")
        return None


def test_a_raising_and_a_malformed_plugin_degrade_the_assessment_visibly_and_the_others_still_count(app, client,
                                                                                                   troubled):
    plugins = app.extensions["crm.runtime"].plugins
    plugins.register(Raising(), name="risk_feed")
    plugins.register(Malformed(), name="sloppy")
    plugins.register(Watchlist(), name="watchlist")

    r = _risk(client, troubled["partner"]["id"])

    assert r.status_code == 200, r.text
    body = r.json
    assert {(d["plugin"], d["hook"], d["code"]) for d in body["degraded"]} == {
        ("risk_feed", "crm_assess_partner_risk", "plugin_error"),
        ("sloppy", "crm_assess_partner_risk", "plugin_malformed_result"),
    }
    assert [f["plugin"] for f in body["factors"]].count("builtin.partner_risk") == 5
    assert ("watchlist", "watchlist", 5) in {(f["plugin"], f["code"], f["weight"]) for f in body["factors"]}
    assert (body["score"], body["level"]) == (95, "high")
    assert MARKER not in r.text


def test_the_built_in_rules_can_be_switched_off(service_app, api_for):
    app = service_app("partners", CRM_PLUGINS_DISABLED="builtin.partner_risk")
    client = app.test_client()
    partner = api_for(client).partner("Unjudged")

    body = _risk(client, partner["id"]).json

    assert (body["score"], body["level"], body["factors"]) == (0, "low", [])


@pytest.fixture
def api_for():
    from tests.integration.partners.conftest import Api

    return Api


def test_the_history_is_read_in_a_fixed_handful_of_queries(app, client, troubled, facts):
    engine = app.extensions["crm.runtime"].engine
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert _risk(client, troubled["partner"]["id"]).status_code == 200
        first = len(statements)
        facts.add(*[facts.delivery(troubled["partner"]["id"], date(2026, 3, 20) + timedelta(days=n))
                    for n in range(40)])
        statements.clear()
        assert _risk(client, troubled["partner"]["id"]).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert first == len(statements) <= 5  # the partner, deliveries by month, spend, disputes, contracts


def test_an_unknown_partner_is_404_a_key_without_partners_read_is_403_and_a_bad_day_is_422(client, troubled):
    assert _risk(client, uuid.uuid4()).status_code == 404
    assert _risk(client, troubled["partner"]["id"], headers=FreshIdentity("partners:write")).status_code == 403
    assert _risk(client, troubled["partner"]["id"], as_of="2026-13-01").status_code == 422
