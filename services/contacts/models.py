"""The contacts service's tables: contacts, their purchase metrics, and its outbox and inbox."""
from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Index, Integer, Numeric, String, UniqueConstraint, types
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import JsonDocument, SeqType, make_base, messaging_models, new_id, utcnow
from services.common.idempotency import idempotency_model

Base = make_base()
OutboxMessage, InboxEntry = messaging_models(Base)
IdempotencyRecord = idempotency_model(Base)

# Column widths, shared with the request schemas so validation and storage agree.
EMAIL_MAX = 254
NAME_MAX = 100
ORG_MAX = 200
PHONE_MAX = 50
PROFILE_LIMITS = {"first_name": NAME_MAX, "last_name": NAME_MAX, "company": ORG_MAX, "job_title": ORG_MAX,
                  "phone": PHONE_MAX}
PROFILE_FIELDS = tuple(PROFILE_LIMITS)


class Contact(Base):
    """One person the company has a relationship with; one record per normalised e-mail address."""

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("id", name="uq_contacts_id"),
        Index("ix_contacts_tags", "tags", postgresql_using="gin"),
        Index("ix_contacts_attributes", "attributes", postgresql_using="gin"),
        # The one rule that keeps a person from being stored twice, also under concurrent conversions.
        Index("uq_contacts_email_normalized", "email_normalized", unique=True),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(default=new_id)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX))
    email_normalized: Mapped[str] = mapped_column(String(EMAIL_MAX))
    first_name: Mapped[str | None] = mapped_column(String(NAME_MAX), default=None)
    last_name: Mapped[str | None] = mapped_column(String(NAME_MAX), default=None)
    company: Mapped[str | None] = mapped_column(String(ORG_MAX), default=None)
    job_title: Mapped[str | None] = mapped_column(String(ORG_MAX), default=None)
    phone: Mapped[str | None] = mapped_column(String(PHONE_MAX), default=None)
    origin_lead_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    # The customer record (issue 8). Kept on the row so one read shows the whole record; see accounts.py,
    # attributes.py and consent.py for the rules that change them.
    account_id: Mapped[uuid.UUID | None] = mapped_column(default=None, index=True)
    tags: Mapped[list] = mapped_column(JsonDocument, default=list)  # sorted, unique, lower-case
    attributes: Mapped[dict] = mapped_column(JsonDocument, default=dict)  # name -> value, typed by its definition
    consents: Mapped[dict] = mapped_column(JsonDocument, default=dict)  # "channel:purpose" -> current state
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)


# -- purchase metrics ---------------------------------------------------------------------------------------
#
# Kept by contact id with no foreign key to `contacts`: events across aggregates are unordered, so a purchase
# may arrive before the contact it names. The API shows the metrics once the contact exists.

MONEY_PLACES = 4
CURRENCY_LEN = 3


class Money(types.TypeDecorator):
    """An exact amount: NUMERIC(18, 4) on PostgreSQL; a decimal string on SQLite, which would store a float.

    Always a `Decimal` in Python, quantized to four places.
    """

    impl = Numeric(18, MONEY_PLACES)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(18, MONEY_PLACES, asdecimal=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = Decimal(value).quantize(Decimal(1).scaleb(-MONEY_PLACES))
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return Decimal(value).quantize(Decimal(1).scaleb(-MONEY_PLACES))


class ContactPurchase(Base):
    """One purchase counted in its contact's metrics; the key keeps it from being counted twice."""

    __tablename__ = "contact_purchases"

    purchase_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(index=True)
    amount: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(CURRENCY_LEN))
    occurred_at: Mapped[datetime]
    event_id: Mapped[uuid.UUID | None] = mapped_column(default=None)  # the event it was counted from
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContactPurchaseSummary(Base):
    """Per contact: how many purchases, the first and the last. Locked while a purchase is counted."""

    __tablename__ = "contact_purchase_summary"

    contact_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    purchase_count: Mapped[int] = mapped_column(Integer, default=0)
    first_purchase_at: Mapped[datetime | None] = mapped_column(default=None)
    last_purchase_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ContactPurchaseMetric(Base):
    """Per contact and currency: the total spent and the number of purchases in that currency."""

    __tablename__ = "contact_purchase_metrics"

    contact_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    currency: Mapped[str] = mapped_column(String(CURRENCY_LEN), primary_key=True)
    total: Mapped[Decimal] = mapped_column(Money())
    count: Mapped[int] = mapped_column(Integer, default=0)


# -- the timeline projection ----------------------------------------------------------------------------------


class TimelineEntry(Base):
    """One thing that happened to a person, from any service: the customer 360's stream (timeline.py).

    Keyed by the event (or record) it came from, so a redelivery adds nothing. Lead events arrive before the
    lead has a contact: they carry `lead_id` only and join the person's stream through `contact_leads`.
    """

    __tablename__ = "timeline_entries"
    __table_args__ = (
        Index("ix_timeline_contact", "contact_id", "occurred_at", "seq"),
        Index("ix_timeline_lead", "lead_id", "occurred_at", "seq"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True)  # the source event's or record's id
    contact_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    lead_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    kind: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime]
    summary: Mapped[str | None] = mapped_column(String(500), default=None)
    data: Mapped[dict] = mapped_column(JsonDocument, default=dict)
    source: Mapped[str] = mapped_column(String(40))  # the service it came from
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContactLead(Base):
    """Which leads became (or were matched to) which contact: joins a lead's earlier history to the person."""

    __tablename__ = "contact_leads"

    lead_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(index=True)


# -- accounts, tags and custom attributes (accounts.py, attributes.py) ---------------------------------------


# -- interactions (interactions.py) ----------------------------------------------------------------------------


# -- consent and feedback (consent.py, feedback.py) -------------------------------------------------------------


# -- imports (imports.py) --------------------------------------------------------------------------------------


# -- merges (merges.py) ----------------------------------------------------------------------------------------


# -- erasures (erasure.py) -------------------------------------------------------------------------------------
