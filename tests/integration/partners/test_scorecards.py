"""Partner scorecards and their trend from real deliveries and disputes, internally and in the portal (PostgreSQL)."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from crm_plugins import ScoreCriterion, hookimpl
from sqlalchemy import event

from services.common.db import utcnow
from services.common.settings import SettingsError
from services.partners.models import Dispute
from services.partners.scorecards import current_quarter
from tests.support.auth import identity_headers

from .conftest import READ, RW

pytestmark = pytest.mark.integration

PORTAL = "/api/v1/partner-portal"


def record(client, partner_id, reference, promised_on, delivered_on, ordered="100", delivered="100", rejected="0",
           amount="1000.00", agreed="1000.00"):
    body = {"order_reference": reference, "promised_on": promised_on, "delivered_on": delivered_on,
            "quantity_ordered": ordered, "quantity_delivered": delivered, "quantity_rejected": rejected,
            "amount": amount, "agreed_amount": agreed, "currency": "EUR"}
    r = client.post(f"/api/v1/partners/{partner_id}/deliveries", headers=RW, json=body)
    assert r.status_code == 201, r.text


def open_dispute_at(app, partner_id, opened_at: datetime):
    """A dispute opened at a given instant (the disputes API opens them now; a period needs them in the past)."""
    with app.extensions["crm.runtime"].session_factory() as s:
        s.add(Dispute(id=uuid.uuid4(), partner_id=uuid.UUID(partner_id), category="quality", amount=Decimal("10.00"),
                      currency="EUR", status="open", opened_by="internal", opened_at=opened_at, updated_at=opened_at))
        s.commit()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def card(client, partner_id, query="", headers=READ):
    r = client.get(f"/api/v1/partners/{partner_id}/scorecard{query}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json


@pytest.fixture
def supplier(api, client, app):
    """A supplier with a known 2026-Q3 and neighbours just outside it, and another partner's records."""
    p = api.partner("Steelworks", status="active")["id"]
    record(client, p, "Q3-1", "2026-07-01", "2026-07-01")                      # on time
    record(client, p, "Q3-2", "2026-08-15", "2026-08-20", delivered="80")       # late, short
    record(client, p, "Q3-3", "2026-09-30", "2026-09-29", rejected="10", amount="1100.00")  # early, rejects, dear
    record(client, p, "Q3-4", "2026-09-10", None, delivered="0", agreed=None)   # never arrived, no agreed amount
    record(client, p, "Q2", "2026-06-30", "2026-07-05")                         # owed in Q2, though it came in Q3
    record(client, p, "Q4", "2026-10-01", "2026-10-09", delivered="50")
    open_dispute_at(app, p, at("2026-07-01T00:00:00"))
    open_dispute_at(app, p, at("2026-09-30T23:59:59"))
    open_dispute_at(app, p, at("2026-10-01T00:00:00"))
    other = api.partner("Other", status="active")["id"]
    record(client, other, "Q3-1", "2026-07-02", "2026-09-01")
    open_dispute_at(app, other, at("2026-08-01T00:00:00"))
    return p, other


def test_a_quarters_scorecard_counts_the_deliveries_promised_in_it_and_the_disputes_opened_in_it(client, supplier):
    p, _other = supplier
    sc = card(client, p, "?period=2026-Q3")
    assert (sc["partner_id"], sc["period"], sc["from"], sc["to"]) == (p, "2026-Q3", "2026-07-01", "2026-09-30")
    assert sc["counts"] == {"deliveries": 4, "delivered": 3, "on_time": 2, "disputes": 2, "priced": 3,
                            "within_price": 2, "quantity_ordered": "400.000", "quantity_delivered": "280.000",
                            "quantity_rejected": "10.000"}
    assert sc["rates"] == {"on_time_rate": "0.6667", "fill_rate": "0.7000", "quality_rate": "0.9643",
                           "dispute_rate": "0.5000", "price_adherence": "0.6667"}
    expected = ((30 * Decimal("0.6667") + 25 * Decimal("0.7000") + 25 * Decimal("0.9643") + 10 * Decimal("0.5")
                 + 10 * Decimal("0.6667")) / 100).quantize(Decimal("0.0001"))
    assert Decimal(sc["overall"]) == expected
    assert sc["weights"] == {"on_time_rate": "30", "fill_rate": "25", "quality_rate": "25", "dispute_rate": "10",
                             "price_adherence": "10"}
    assert (sc["criteria"], sc["degraded"]) == ([], [])


def test_months_and_years_are_periods_too(client, supplier):
    p, _other = supplier
    september = card(client, p, "?period=2026-09")
    assert (september["from"], september["to"]) == ("2026-09-01", "2026-09-30")
    assert (september["counts"]["deliveries"], september["counts"]["disputes"]) == (2, 1)
    year = card(client, p, "?period=2026")
    assert (year["counts"]["deliveries"], year["counts"]["disputes"]) == (6, 3)


def test_a_period_without_deliveries_has_null_rates_and_no_overall(client, supplier):
    p, _other = supplier
    sc = card(client, p, "?period=2025-Q1")
    assert set(sc["rates"].values()) == {None} and sc["overall"] is None
    assert sc["counts"]["deliveries"] == 0 and sc["counts"]["quantity_ordered"] == "0.000"


def test_the_default_period_is_the_current_quarter(client, supplier):
    p, _other = supplier
    assert card(client, p)["period"] == current_quarter(utcnow().date()).label


def test_unknown_partners_bad_periods_and_missing_scopes_are_refused(client, supplier):
    p, _other = supplier
    assert client.get(f"/api/v1/partners/{uuid.uuid4()}/scorecard", headers=READ).status_code == 404
    assert client.get(f"/api/v1/partners/{uuid.uuid4()}/scorecard/trend", headers=READ).status_code == 404
    for bad in ("?period=2026-Q5", "?period=Q3", "?period=2026-7"):
        r = client.get(f"/api/v1/partners/{p}/scorecard{bad}", headers=READ)
        assert r.status_code == 422 and list(r.json["errors"]) == ["period"], bad
    assert client.get(f"/api/v1/partners/{p}/scorecard", headers=identity_headers("contacts:read")).status_code == 403


def test_late_deliveries_and_a_dispute_lower_the_scorecard(client, app, api):
    p = api.partner("Punctual", status="active")["id"]
    for i in range(4):
        record(client, p, f"OK-{i}", "2026-08-10", "2026-08-10")
    before = card(client, p, "?period=2026-Q3")
    assert (before["rates"]["on_time_rate"], before["overall"]) == ("1.0000", "1.0000")
    for i in range(2):
        record(client, p, f"LATE-{i}", "2026-08-20", "2026-09-15")
    open_dispute_at(app, p, at("2026-08-25T12:00:00"))
    after = card(client, p, "?period=2026-Q3")
    assert after["rates"]["on_time_rate"] == "0.6667" and after["rates"]["dispute_rate"] == "0.1667"
    assert Decimal(after["overall"]) < Decimal(before["overall"])


class Certified:
    @hookimpl
    def crm_score_partner(self, partner, period, metrics):
        if metrics.deliveries == 0:
            return None
        return ScoreCriterion("certified", 1, 100, f"{partner.name} is certified ({period.label})")


class Broken:
    @hookimpl
    def crm_score_partner(self, metrics):
        raise RuntimeError("secret detail")


def test_plugin_criteria_count_with_their_plugin_and_a_broken_plugin_degrades_visibly(client, app, supplier):
    p, _other = supplier
    without = Decimal(card(client, p, "?period=2026-Q3")["overall"])
    host = app.extensions["crm.runtime"].plugins
    host.register(Certified(), name="certified")
    host.register(Broken(), name="broken")
    r = client.get(f"/api/v1/partners/{p}/scorecard?period=2026-Q3", headers=READ)
    sc = r.json
    assert sc["criteria"] == [{"plugin": "certified", "code": "certified", "score": "1", "weight": "100",
                               "reason": "Steelworks is certified (2026-Q3)"}]
    assert sc["degraded"] == [{"plugin": "broken", "hook": "crm_score_partner", "code": "plugin_error"}]
    assert Decimal(sc["overall"]) == ((without * 100 + 100) / 200).quantize(Decimal("0.0001"))
    assert "secret detail" not in r.get_data(as_text=True)
    # An empty period: the plugin adds nothing, so there is still no overall score.
    assert card(client, p, "?period=2025-Q1")["overall"] is None


def test_the_weights_setting_changes_the_overall_score_and_a_bad_one_stops_start_up(service_app, client, supplier,
                                                                                    app):
    p, _other = supplier
    url = app.extensions["crm.settings"].database_url
    only_on_time = service_app("partners", database_url=url, CRM_PARTNERS_SCORECARD_WEIGHTS=(
        '{"on_time_rate": 1, "fill_rate": 0, "quality_rate": 0, "dispute_rate": 0, "price_adherence": 0}'))
    sc = card(only_on_time.test_client(), p, "?period=2026-Q3")
    assert sc["overall"] == sc["rates"]["on_time_rate"] == "0.6667"
    with pytest.raises(SettingsError, match="CRM_PARTNERS_SCORECARD_WEIGHTS"):
        service_app("partners", database_url=url, CRM_PARTNERS_SCORECARD_WEIGHTS='{"speed": 1}')


def test_the_trend_is_one_scorecard_per_period_oldest_first_from_one_query(client, app, supplier):
    p, _other = supplier
    statements = []
    engine = app.extensions["crm.runtime"].engine

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        r = client.get(f"/api/v1/partners/{p}/scorecard/trend?periods=4&to=2026-Q4", headers=READ)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert r.status_code == 200, r.text
    assert [c["period"] for c in r.json["items"]] == ["2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4"]
    # The partner, then every figure of every period.
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 2
    for item in r.json["items"]:
        assert item == card(client, p, f"?period={item['period']}")
    assert [c["counts"]["deliveries"] for c in r.json["items"]] == [0, 1, 4, 1]
    ranged = client.get(f"/api/v1/partners/{p}/scorecard/trend?from=2026-08&to=2026-10", headers=READ).json
    assert [(c["period"], c["counts"]["deliveries"]) for c in ranged["items"]] == [
        ("2026-08", 1), ("2026-09", 2), ("2026-10", 1)]
    default = client.get(f"/api/v1/partners/{p}/scorecard/trend", headers=READ).json["items"]
    assert len(default) == 4 and default[-1]["period"] == current_quarter(utcnow().date()).label


@pytest.mark.parametrize("query, field", [
    ("?periods=0", "periods"), ("?periods=25", "periods"), ("?from=2026-01&periods=2", "periods"),
    ("?from=2026&to=2026-Q3", "from"), ("?from=2026-Q4&to=2026-Q3", "from"), ("?from=2020-01&to=2026-01", "from"),
    ("?to=2026-Q9", "to"),
])
def test_a_trend_that_cannot_be_is_a_422_naming_the_argument(client, supplier, query, field):
    p, _other = supplier
    r = client.get(f"/api/v1/partners/{p}/scorecard/trend{query}", headers=READ)
    assert r.status_code == 422 and list(r.json["errors"]) == [field], r.json


# -- the portal --------------------------------------------------------------------------------------------

def portal_headers(partner_id, key="key"):
    return identity_headers(kind="partner", partner_id=partner_id, key_id=key)


def test_each_partner_sees_its_own_scorecard_and_trend_in_the_portal(client, supplier):
    for partner_id in supplier:
        headers = portal_headers(partner_id)
        own = client.get(f"{PORTAL}/scorecard?period=2026-Q3", headers=headers)
        assert own.status_code == 200 and own.json == card(client, partner_id, "?period=2026-Q3")
        trend = client.get(f"{PORTAL}/scorecard/trend?periods=2&to=2026-Q3", headers=headers)
        assert trend.status_code == 200 and trend.json["partner_id"] == partner_id
        assert [c["period"] for c in trend.json["items"]] == ["2026-Q2", "2026-Q3"]
    p, other = supplier
    # The partner id comes only from the token.
    forged = {**portal_headers(other), "X-CRM-Partner-ID": p}
    r = client.get(f"{PORTAL}/scorecard?period=2026-Q3&partner_id={p}", headers=forged)
    assert r.json["partner_id"] == other and r.json["counts"]["deliveries"] == 1


def test_portal_scorecard_routes_refuse_internal_keys_strangers_and_suspended_partners(client, supplier):
    p, _other = supplier
    paths = [f"{PORTAL}/scorecard", f"{PORTAL}/scorecard/trend"]
    for path in paths:
        for headers in (RW, identity_headers("admin"), identity_headers("partners:*")):
            assert client.get(path, headers=headers).status_code == 403, path
        assert client.get(path, headers=portal_headers(str(uuid.uuid4()))).status_code == 403, path
        assert client.get(path).status_code == 401
        # A partner key cannot read the internal routes, its own or another's.
        assert client.get(path.replace(PORTAL, f"/api/v1/partners/{p}"),
                          headers=portal_headers(p)).status_code == 403
    assert client.patch(f"/api/v1/partners/{p}", headers=RW, json={"status": "suspended"}).status_code == 200
    for path in paths:
        assert client.get(path, headers=portal_headers(p)).status_code == 403, path
