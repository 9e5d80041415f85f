"""Fixtures for termination policies on the real PostgreSQL: both services' apps, keys per scope, and helpers
that seed evidence and run the worker's job."""
from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from services.common.db import utcnow
from tests.support.auth import identity_headers

READ = identity_headers("termination:read", key_id="reader")
MANAGE = identity_headers("termination:read", "termination:manage", key_id="manager")
DECIDE = identity_headers("termination:read", "termination:decide", key_id="operator")
ONLY_DECIDE = identity_headers("termination:decide", key_id="decider")
ONLY_MANAGE = identity_headers("termination:manage", key_id="manager-only")

CUSTOMERS = "/api/v1/termination/customers"
PARTNERS = "/api/v1/termination/partners"


def etag_of(response) -> str:
    return response.headers["ETag"]


def outbox(runtime, model, event_type: str) -> list[dict]:
    """The CloudEvents of one type in a service's outbox, oldest first."""
    with runtime.session_factory() as s:
        rows = s.scalars(select(model).where(model.event_type == event_type).order_by(model.seq))
        return [json.loads(row.payload) for row in rows]


def days_ago(days: float) -> datetime:
    return utcnow() - timedelta(days=days)


@pytest.fixture
def contacts_app(service_app):
    return service_app("contacts")


@pytest.fixture
def partners_app(service_app):
    return service_app("partners")


class Customers:
    """Seeds contacts with termination evidence straight into the contacts database."""

    def __init__(self, runtime):
        self.runtime = runtime

    def contact(self, name: str, *, status: str = "active"):
        from services.contacts.models import Contact

        email = f"{name}@example.com"
        contact = Contact(id=uuid.uuid4(), email=email, email_normalized=email, first_name=name.title(),
                          status=status, terminated_at=utcnow() if status == "terminated" else None)
        with self.runtime.session_factory() as s, s.begin():
            s.add(contact)
        return contact.id

    def purchases(self, contact_id, count: int, *, amount="20.00", discount=None):
        from services.contacts.models import ContactPurchase

        with self.runtime.session_factory() as s, s.begin():
            s.add_all(ContactPurchase(purchase_id=uuid.uuid4(), contact_id=contact_id, amount=Decimal(amount),
                                      currency="EUR", occurred_at=days_ago(10 + i),
                                      discount=None if discount is None else Decimal(discount))
                      for i in range(count))

    def complaints(self, contact_id, count: int):
        from services.contacts.models import Interaction

        with self.runtime.session_factory() as s, s.begin():
            s.add_all(Interaction(id=uuid.uuid4(), contact_id=contact_id, type="complaint", occurred_at=days_ago(5 + i),
                                  summary="Broken again", recorded_by="test", category="product", status="open")
                      for i in range(count))

    def flag(self, contact_id, code: str = "chargeback"):
        from services.contacts.models import ContactFraudFlag

        flag = ContactFraudFlag(id=uuid.uuid4(), contact_id=contact_id, code=code, reason="Card reported stolen",
                                flagged_by="test", flagged_at=days_ago(1))
        with self.runtime.session_factory() as s, s.begin():
            s.add(flag)
        return flag.id

    def clear_flags(self, contact_id):
        from services.contacts.models import ContactFraudFlag

        with self.runtime.session_factory() as s, s.begin():
            for flag in s.scalars(select(ContactFraudFlag).where(ContactFraudFlag.contact_id == contact_id)):
                flag.cleared_at, flag.cleared_by, flag.clear_reason = utcnow(), "test", "Resolved with the bank"

    def payments(self, contact_id, *, on_time: int, late: int):
        from services.contacts.models import ContactPayment

        today = date.today()
        rows = [ContactPayment(id=uuid.uuid4(), contact_id=contact_id, invoice_reference=f"INV-{uuid.uuid4().hex[:8]}",
                               amount=Decimal("100.00"), currency="EUR", due_on=today - timedelta(days=60 + i),
                               paid_on=today - timedelta(days=60 + i - (45 if i < late else 0)), recorded_by="test")
                for i in range(on_time + late)]
        with self.runtime.session_factory() as s, s.begin():
            s.add_all(rows)


@pytest.fixture
def customers(contacts_app):
    return Customers(contacts_app.extensions["crm.runtime"])


def create_policy(client, prefix: str, code: str, *, enabled: bool = True, **extra):
    r = client.post(f"{prefix}/policies", json={"code": code, "enabled": enabled, **extra}, headers=MANAGE)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def run_job(runtime, kit, **options) -> None:
    """One pass of the worker's termination job: claim the waiting run and run it to the end."""
    from services.common.termination.jobs import TerminationJob

    assert TerminationJob(runtime, kit, **options).run_once() is True


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
