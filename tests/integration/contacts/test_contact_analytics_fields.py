"""A contact's measures outside the reports, on the real PostgreSQL: the record's `analytics` block (still one
query), the contact list's filters by measure and the export's columns, all from the base currency's snapshot."""
from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event

from services.contacts import export
from services.contacts.analytics.contact_measures import CONTACT_MEASURES
from tests.integration.contacts.test_analytics_reports import AS_OF, CUSTOMERS, make_contacts, write_snapshot
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

CONTACTS = "/api/v1/contacts"
READ = identity_headers("contacts:read")
EXPORTER = identity_headers("contacts:export")


@pytest.fixture
def contacts(runtime) -> dict[str, uuid.UUID]:
    return make_contacts(runtime)


class _Statements:
    """The SQL statements an engine runs while the block is open."""

    def __init__(self, engine):
        self.engine, self.sql = engine, []

    def _count(self, _conn, _cursor, statement, *_args):
        self.sql.append(statement)

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *_exc):
        event.remove(self.engine, "before_cursor_execute", self._count)


def _names(body) -> list[str]:
    return sorted(item["email"].split("@")[0] for item in body["items"])


def _list(client, query: str, status: int = 200) -> dict:
    response = client.get(f"{CONTACTS}?{query}", headers=READ)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.json


# -- the record ------------------------------------------------------------------------------------------------------

def test_a_contacts_record_shows_its_measures_in_the_base_currency_in_one_query(client, runtime, contacts):
    snapshot = write_snapshot(runtime, contacts)
    write_snapshot(runtime, contacts, currency="USD", customers={"ann": {**CUSTOMERS["ann"], "abc_class": "C"}})
    with _Statements(runtime.engine) as statements:
        response = client.get(f"{CONTACTS}/{contacts['ann']}", headers=READ)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(statements.sql) == 1
    assert response.json["analytics"] == {
        "currency": "EUR", "snapshot_id": str(snapshot.id), "as_of": "2026-06-01T00:00:00+00:00",
        "abc_class": "A", "recency_score": 5, "frequency_score": 5, "monetary_score": 5, "rfm_segment": "champions",
        "clv": "500.0000", "predicted_margin": "300.0000", "historical_margin": "250.0000",
        "cost_to_serve": "50.0000", "current_profit": "100.0000", "quadrant": "best", "pyramid_level": "top",
        "stage": "loyal"}
    prospect = client.get(f"{CONTACTS}/{contacts['eve']}", headers=READ).json["analytics"]
    assert {name: prospect[name] for name in ("abc_class", "clv", "quadrant", "pyramid_level", "stage")} == {
        "abc_class": None, "clv": None, "quadrant": None, "pyramid_level": "prospect", "stage": "prospect"}


def test_the_record_reads_the_newest_completed_snapshot(client, runtime, contacts):
    write_snapshot(runtime, contacts, customers={"bob": {**CUSTOMERS["bob"], "abc_class": "C", "abc_rank": 1}},
                   as_of=AS_OF - timedelta(days=1))
    newest = write_snapshot(runtime, contacts)
    write_snapshot(runtime, contacts, status="running",
                   customers={"bob": {**CUSTOMERS["bob"], "abc_class": "A", "abc_rank": 1}})
    analytics = client.get(f"{CONTACTS}/{contacts['bob']}", headers=READ).json["analytics"]
    assert (analytics["snapshot_id"], analytics["abc_class"]) == (str(newest.id), "B")


def test_the_record_has_no_analytics_before_a_snapshot_or_when_the_snapshot_predates_the_contact(
        client, runtime, contacts):
    with _Statements(runtime.engine) as statements:
        body = client.get(f"{CONTACTS}/{contacts['ann']}", headers=READ).json
    assert body["analytics"] is None and len(statements.sql) == 1
    write_snapshot(runtime, contacts, customers={"ann": CUSTOMERS["ann"]})
    assert client.get(f"{CONTACTS}/{contacts['bob']}", headers=READ).json["analytics"] is None
    assert client.get(f"{CONTACTS}/{contacts['ann']}", headers=READ).json["analytics"]["abc_class"] == "A"


# -- the list's filters ----------------------------------------------------------------------------------------------

def test_the_contact_list_filters_by_each_measure(client, runtime, contacts):
    write_snapshot(runtime, contacts)
    assert _names(_list(client, "abc_class=A")) == ["ann"]
    assert _names(_list(client, "abc_class=A&abc_class=C")) == ["ann", "cy"]
    assert _names(_list(client, "rfm_segment=loyal&rfm_segment=at_risk")) == ["bob", "cy"]
    assert _names(_list(client, "quadrant=worst")) == ["dee"]
    assert _names(_list(client, "pyramid_level=prospect&pyramid_level=inactive")) == ["dee", "eve"]
    assert _names(_list(client, "stage=new&stage=loyal")) == ["ann", "cy"]
    assert _names(_list(client, "clv_min=20")) == ["ann", "bob", "cy"]
    assert _names(_list(client, "clv_min=-10&clv_max=100")) == ["bob", "cy", "dee"]
    assert _names(_list(client, "clv_max=-10.0001")) == []
    # Filters combine: every one must hold, with the list's other filters too.
    assert _names(_list(client, "pyramid_level=top&pyramid_level=big&abc_class=B")) == ["bob"]
    assert _names(_list(client, "stage=loyal&stage=lapsed&q=dee")) == ["dee"]


def test_the_measure_filters_page_like_the_list(client, runtime, contacts):
    write_snapshot(runtime, contacts)
    first = _list(client, "abc_class=A&abc_class=B&abc_class=C&limit=2")
    second = _list(client, f"abc_class=A&abc_class=B&abc_class=C&limit=2&cursor={first['next_cursor']}")
    assert [i["email"] for i in first["items"] + second["items"]] == \
        ["cy@example.com", "bob@example.com", "ann@example.com"]  # newest first
    assert second["next_cursor"] is None


def test_measure_filters_match_nobody_before_a_snapshot_or_in_another_currencys_snapshot(client, runtime, contacts):
    assert _list(client, "stage=prospect")["items"] == []
    write_snapshot(runtime, contacts, currency="USD")
    assert _list(client, "stage=prospect")["items"] == []
    assert len(_list(client, "")["items"]) == 5


def test_unknown_measure_values_are_422_naming_the_filter(client, runtime, contacts):
    for query, name in (("abc_class=D", "abc_class"), ("rfm_segment=sleepy", "rfm_segment"),
                        ("quadrant=good", "quadrant"), ("pyramid_level=huge", "pyramid_level"),
                        ("stage=gone", "stage"), ("clv_min=lots", "clv_min"), ("clv_max=NaN", "clv_max"),
                        ("clv_min=5&clv_max=4", "clv_max")):
        body = _list(client, query, status=422)
        assert name in str(body["errors"]), (query, body)


# -- the export -------------------------------------------------------------------------------------------------------

def _csv(response) -> list[dict]:
    assert response.status_code == 200, response.get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True), newline="")))
    assert rows[0] == list(export.COLUMNS)
    return [dict(zip(rows[0], row)) for row in rows[1:]]


def test_the_export_has_the_measures_and_takes_their_filters(client, runtime, contacts):
    assert set(CONTACT_MEASURES) <= set(export.COLUMNS)
    write_snapshot(runtime, contacts)
    rows = {row["email"].split("@")[0]: row for row in _csv(client.get(f"{CONTACTS}/export", headers=EXPORTER))}
    assert {name: rows["ann"][name] for name in CONTACT_MEASURES} == {
        "abc_class": "A", "recency_score": "5", "frequency_score": "5", "monetary_score": "5",
        "rfm_segment": "champions", "clv": "500.0000", "predicted_margin": "300.0000",
        "historical_margin": "250.0000", "cost_to_serve": "50.0000", "current_profit": "100.0000",
        "quadrant": "best", "pyramid_level": "top", "stage": "loyal"}
    assert (rows["dee"]["clv"], rows["cy"]["current_profit"]) == ("-10.0000", "-5.0000")  # numbers, not neutralised
    assert (rows["eve"]["abc_class"], rows["eve"]["clv"], rows["eve"]["stage"]) == ("", "", "prospect")
    filtered = _csv(client.get(f"{CONTACTS}/export?quadrant=best&quadrant=hold", headers=EXPORTER))
    assert sorted(row["email"] for row in filtered) == ["ann@example.com", "bob@example.com"]


def test_the_export_before_a_snapshot_has_empty_measure_cells(client, runtime, contacts):
    rows = _csv(client.get(f"{CONTACTS}/export", headers=EXPORTER))
    assert len(rows) == 5
    assert all(row[name] == "" for row in rows for name in CONTACT_MEASURES)
