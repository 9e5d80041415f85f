"""`crm analytics refresh`: a refresh run in-process against the contacts database, with its step timings."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from crm.cli import cli
from crm.registry import SUITE
from services.common.settings import from_env
from services.contacts.analytics.refresh import STEPS
from services.contacts.app import build
from services.contacts.models import AnalyticsRefresh, Contact, ContactPurchase, CustomerAnalytics

pytestmark = pytest.mark.integration


@pytest.fixture
def contacts_database(make_database):
    url = make_database("contacts")
    SUITE.migrate("contacts", url)
    return url


@pytest.fixture
def run(contacts_database):
    def invoke(*args: str, **env: str):
        return CliRunner().invoke(cli, ["analytics", "refresh", *args],
                                  env={"CONTACTS_DATABASE_URL": contacts_database, "DATABASE_URL": None, **env})
    return invoke


@pytest.fixture
def db(contacts_database):
    runtime = build(from_env("contacts", {"CONTACTS_DATABASE_URL": contacts_database}, require_secret=False))
    yield runtime
    runtime.engine.dispose()


def seed(db) -> uuid.UUID:
    buyer = uuid.uuid4()
    with db.session_factory() as s, s.begin():
        s.add_all([Contact(id=buyer, email="b@example.com", email_normalized="b@example.com"),
                   Contact(email="p@example.com", email_normalized="p@example.com")])
        s.add_all(ContactPurchase(purchase_id=uuid.uuid4(), contact_id=buyer, amount=Decimal(amount), margin=None,
                                  currency=currency, occurred_at=datetime(2026, 3, 1, tzinfo=timezone.utc))
                  for amount, currency in (("10", "USD"), ("20", "USD"), ("30", "EUR")))
    return buyer


def test_a_refresh_prints_its_snapshot_and_every_steps_time(run, db):
    buyer = seed(db)

    result = run("--currency", "usd", "--as-of", "2026-06-01T00:00:00", "--param", "window_days=30",
                 "--param", "interaction_costs.call=2", "--param", "current_threshold=median")

    assert result.exit_code == 0, result.output
    first, *steps, total = result.stdout.splitlines()
    assert first.startswith("refresh ") and first.endswith(": completed: USD as of 2026-06-01T00:00:00+00:00, "
                                                           "2 customers")
    assert [line.split()[0] for line in steps] == list(STEPS)
    assert total.split()[0] == "total"
    with db.session_factory() as s:
        refresh = s.scalar(select(AnalyticsRefresh))
        row = s.scalar(select(CustomerAnalytics).where(CustomerAnalytics.contact_id == buyer))
    assert (refresh.trigger, refresh.requested_by, refresh.parameters["window_days"]) == ("cli", "cli", 30)
    assert refresh.parameters["interaction_costs"]["call"] == "2"
    assert (row.purchase_count, row.revenue_total_units, row.purchases_window) == (2, 300_000, 0)


def test_an_invalid_parameter_is_named_and_nothing_is_stored(run, db):
    result = run("--param", "window_days=0", "--param", "abc_a_share=most")

    assert result.exit_code == 1
    assert "parameters.window_days:" in result.output and "parameters.abc_a_share:" in result.output
    with db.session_factory() as s:
        assert s.scalar(select(AnalyticsRefresh)) is None


def test_the_base_currency_is_the_default(run, db):
    result = run(CRM_BASE_CURRENCY="SEK")

    assert result.exit_code == 0, result.output
    assert ": completed: SEK as of " in result.stdout
