"""Read paths on the real PostgreSQL: one query per GET by id, autocommit reads that refuse writes, a pool that recovers."""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import date, datetime, timezone
from decimal import Decimal
from urllib.parse import urlsplit

import psycopg
import pytest
from sqlalchemy import event, func, insert, select, text

from services.common.uow import ReadOnlyUnitOfWork

from tests.support import infra
from tests.support.auth import identity_headers
from tests.support.spend import spend_line


@contextmanager
def statements(engine):
    """Collect the SQL statements the engine sends while the block runs."""
    sent: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _executemany):
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _terminate_connections(database_url: str) -> int:
    """Kill every server process connected to the database, as a PostgreSQL restart would."""
    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(infra.admin_database_url(), autocommit=True) as conn:
        return len(conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchall())


def test_a_get_of_one_contact_with_purchases_is_one_query(service_app):
    from services.contacts.models import ContactPurchaseMetric, ContactPurchaseSummary
    from services.contacts.service import create_contact

    app = service_app("contacts")
    runtime = app.extensions["crm.runtime"]
    contact = create_contact(runtime.uow(), {"email": "ada@engines.example", "first_name": "Ada"})
    with runtime.session_factory() as s, s.begin():
        s.add(ContactPurchaseSummary(contact_id=contact.id, purchase_count=3,
                                     first_purchase_at=datetime(2026, 1, 2, tzinfo=timezone.utc),
                                     last_purchase_at=datetime(2026, 3, 4, tzinfo=timezone.utc)))
        s.add_all([ContactPurchaseMetric(contact_id=contact.id, currency="USD", total=Decimal("3.10"), count=1),
                   ContactPurchaseMetric(contact_id=contact.id, currency="EUR", total=Decimal("12.50"), count=2,
                                         returned=Decimal("2.5"), margin=Decimal(4), discount=Decimal(1))])
    client = app.test_client()

    with statements(runtime.engine) as sent:
        r = client.get(f"/api/v1/contacts/{contact.id}", headers=identity_headers("contacts:read"))

    assert r.status_code == 200, r.text
    assert len(sent) == 1
    assert r.json["purchases"]["count"] == 3
    assert r.json["purchases"]["total_spend"] == [
        spend_line("EUR", "12.5000", 2, returned="2.5000", net="10.0000", margin="4.0000", discount="1.0000"),
        spend_line("USD", "3.1000", 1)]


def test_a_get_of_a_contact_without_purchases_is_one_query_and_an_unknown_one_is_404(service_app):
    from services.contacts.service import create_contact

    app = service_app("contacts")
    runtime = app.extensions["crm.runtime"]
    contact = create_contact(runtime.uow(), {"email": "grace@navy.example"})
    client = app.test_client()

    with statements(runtime.engine) as sent:
        r = client.get(f"/api/v1/contacts/{contact.id}", headers=identity_headers("contacts:read"))
    missing = client.get(f"/api/v1/contacts/{uuid.uuid4()}", headers=identity_headers("contacts:read"))

    assert r.status_code == 200 and len(sent) == 1
    assert r.json["purchases"] == {"count": 0, "first_purchase_at": None, "last_purchase_at": None,
                                   "total_spend": []}
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"


def test_a_get_of_one_lead_with_its_touches_is_one_query(service_app):
    from services.leads.service import capture_lead

    app = service_app("leads")
    runtime = app.extensions["crm.runtime"]
    lead, _ = capture_lead(runtime.uow(), {"email": "ada@engines.example", "source": "web"}, plugins=runtime.plugins)
    capture_lead(runtime.uow(), {"email": "ada@engines.example", "source": "event"}, plugins=runtime.plugins)
    client = app.test_client()

    with statements(runtime.engine) as sent:
        r = client.get(f"/api/v1/leads/{lead.id}", headers=identity_headers("leads:read"))

    assert r.status_code == 200, r.text
    assert len(sent) == 1
    assert [t["source"] for t in r.json["touches"]] == ["event", "web"]


def test_a_get_of_one_member_with_its_balance_is_one_query(service_app):
    from services.loyalty.service import adjust_points, enrol_member

    app = service_app("loyalty")
    runtime = app.extensions["crm.runtime"]
    member = enrol_member(runtime.uow(), uuid.uuid4())
    adjust_points(runtime.uow(), member["id"], 40, reason="welcome")
    adjust_points(runtime.uow(), member["id"], -15, reason="correction")
    client = app.test_client()

    with statements(runtime.engine) as sent:
        r = client.get(f"/api/v1/loyalty/members/{member['id']}", headers=identity_headers("loyalty:read"))

    assert r.status_code == 200, r.text
    assert len(sent) == 1
    assert (r.json["balance"], r.json["lifetime_points"]) == (25, 0)


def test_a_get_of_one_contract_with_its_terms_is_one_query(service_app):
    from services.partners.service import create_contract, create_partner

    app = service_app("partners")
    runtime = app.extensions["crm.runtime"]
    partner = create_partner(runtime.uow(), {"name": "Acme", "type": "supplier"})
    terms = {"payment_terms_days": 30, "discount_percent": Decimal("2.5"), "delivery_lead_time_days": 14,
             "minimum_order_volume": Decimal("100"), "currency": "EUR", "effective_from": date(2026, 1, 1),
             "effective_to": date(2026, 12, 31), "auto_renew": False, "notice_period_days": 30}
    contract = create_contract(runtime.uow(), partner.id, {"title": "Supply", "terms": terms})
    client = app.test_client()
    headers = identity_headers("partners:read")

    with statements(runtime.engine) as sent:
        detail = client.get(f"/api/v1/contracts/{contract['id']}", headers=headers)
        history = client.get(f"/api/v1/contracts/{contract['id']}/terms", headers=headers)

    assert detail.status_code == 200 and history.status_code == 200, (detail.text, history.text)
    assert len(sent) == 2
    assert detail.json["terms"]["payment_terms_days"] == 30
    assert [v["version"] for v in history.json["items"]] == [1]


def test_a_read_only_unit_of_work_cannot_write_on_postgresql(service_app):
    from services.contacts.models import Contact

    app = service_app("contacts")
    runtime = app.extensions["crm.runtime"]

    # Reads run in autocommit, so a write must be refused before it is sent: it would commit on its own.
    reader = runtime.uow(read_only=True)
    with pytest.raises(ReadOnlyUnitOfWork):
        with reader:
            reader.session.execute(insert(Contact).values(id=uuid.uuid4(), email="x@y.example",
                                                          email_normalized="x@y.example"))
    with pytest.raises(ReadOnlyUnitOfWork):
        with reader:
            reader.session.add(Contact(id=uuid.uuid4(), email="z@y.example", email_normalized="z@y.example"))
            reader.session.flush()

    writer = runtime.uow()
    with writer:  # the pooled connection went back without its read-only settings
        assert not writer.session.connection().connection.dbapi_connection.autocommit
        writer.session.execute(insert(Contact).values(id=uuid.uuid4(), email="x@y.example",
                                                      email_normalized="x@y.example"))
        writer.rollback()
    with runtime.session_factory() as check:
        assert check.scalar(select(func.count()).select_from(Contact)) == 0, "nothing was written"


def test_a_read_only_unit_of_work_opens_no_transaction_on_postgresql(service_app):
    app = service_app("contacts")
    runtime = app.extensions["crm.runtime"]
    reader = runtime.uow(read_only=True)
    with reader:
        assert reader.session.execute(text("SELECT 1")).scalar() == 1
        raw = reader.session.connection().connection.dbapi_connection
        # No BEGIN went before the SELECT and no ROLLBACK follows: one round trip for a one-statement read.
        assert raw.autocommit
        assert raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_the_pool_recovers_after_the_database_drops_every_connection(service_app):
    from services.contacts.service import create_contact

    app = service_app("contacts")
    runtime = app.extensions["crm.runtime"]
    contact = create_contact(runtime.uow(), {"email": "ada@engines.example"})
    client = app.test_client()
    url = f"/api/v1/contacts/{contact.id}"
    headers = identity_headers("contacts:read")
    assert client.get(url, headers=headers).status_code == 200

    assert _terminate_connections(runtime.settings.database_url) >= 1

    # No ping before each checkout: the first request on a dead connection may fail, as a 503 problem+json that
    # asks the caller to retry; the disconnect invalidates the whole pool, so the requests after it run on
    # fresh connections.
    first = client.get(url, headers=headers)
    assert (first.status_code, first.mimetype) in (
        (200, "application/json"), (503, "application/problem+json")), (first.status_code, first.get_data())
    if first.status_code == 503:
        assert int(first.headers["Retry-After"]) >= 1
    assert [client.get(url, headers=headers).status_code for _ in range(3)] == [200, 200, 200]
