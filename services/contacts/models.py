"""The contacts service's tables: contacts, their purchase metrics, and its outbox and inbox."""
from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Index, Integer, Numeric, SmallInteger, String, UniqueConstraint, text, types
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import JsonDocument, SeqType, make_base, messaging_models, new_id, utcnow
from services.common.idempotency import idempotency_model
from services.common.termination.models import termination_models

from .dialects import email_domain

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
# A contact is active until an operator accepts a `terminate` recommendation for it (termination_history.py).
CONTACT_STATUSES = ("active", "terminated")


class Contact(Base):
    """One person the company has a relationship with; one record per normalised e-mail address."""

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("id", name="uq_contacts_id"),
        Index("ix_contacts_tags", "tags", postgresql_using="gin"),
        Index("ix_contacts_attributes", "attributes", postgresql_using="gin"),
        # The one rule that keeps a person from being stored twice, also under concurrent conversions.
        Index("uq_contacts_email_normalized", "email_normalized", unique=True),
        CheckConstraint("(status = 'active' AND terminated_at IS NULL)"
                        " OR (status = 'terminated' AND terminated_at IS NOT NULL)", name="ck_contacts_status"),
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
    status: Mapped[str] = mapped_column(String(12), default="active", server_default="active")  # CONTACT_STATUSES
    terminated_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)


# -- purchase metrics ---------------------------------------------------------------------------------------
#
# Kept by contact id with no foreign key to `contacts`: events across aggregates are unordered, so a purchase
# may arrive before the contact it names. The API shows the metrics once the contact exists.

MONEY_PLACES = 4
CURRENCY_LEN = 3
COUPON_CODE_MAX = 64


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
    """One purchase counted in its contact's metrics (the purchase fact table); the key keeps it from counting twice."""

    __tablename__ = "contact_purchases"

    purchase_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(index=True)
    amount: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(CURRENCY_LEN))
    occurred_at: Mapped[datetime]
    event_id: Mapped[uuid.UUID | None] = mapped_column(default=None)  # the event it was counted from
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Both in the purchase's currency; None when loyalty did not know them (purchases before issue 9 too).
    margin: Mapped[Decimal | None] = mapped_column(Money(), default=None)
    discount: Mapped[Decimal | None] = mapped_column(Money(), default=None)
    coupon_code: Mapped[str | None] = mapped_column(String(COUPON_CODE_MAX), default=None)  # as loyalty sent it


class ContactReturn(Base):
    """One return of (part of) a purchase, from crm.purchase.returned; keyed by the return, so it counts once.

    No link to `contact_purchases`: a return may arrive before its purchase (purchase_facts.py).
    """

    __tablename__ = "contact_returns"

    return_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    purchase_id: Mapped[uuid.UUID] = mapped_column(index=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(index=True)
    amount: Mapped[Decimal] = mapped_column(Money())
    margin: Mapped[Decimal | None] = mapped_column(Money(), default=None)  # the margin given back
    currency: Mapped[str] = mapped_column(String(CURRENCY_LEN))
    occurred_at: Mapped[datetime]
    event_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
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
    """Per contact and currency: the total spent (gross), the purchases, what returns gave back, margin, discount."""

    __tablename__ = "contact_purchase_metrics"

    contact_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    currency: Mapped[str] = mapped_column(String(CURRENCY_LEN), primary_key=True)
    total: Mapped[Decimal] = mapped_column(Money())
    count: Mapped[int] = mapped_column(Integer, default=0)
    returned: Mapped[Decimal] = mapped_column(Money(), default=Decimal(0))
    # Net: the purchases' margins less the margins their returns gave back (purchases without one add nothing).
    margin: Mapped[Decimal] = mapped_column(Money(), default=Decimal(0))
    discount: Mapped[Decimal] = mapped_column(Money(), default=Decimal(0))


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

ACCOUNT_NAME_MAX = 200
DOMAIN_MAX = 253  # a host name (RFC 1035), in its IDNA ASCII form
INDUSTRY_MAX = 100
OWNER_MAX = 100
SIZE_BANDS = ("1-10", "11-50", "51-200", "201-1000", "1001-5000", "5001+")
ADDRESS_LIMITS = {"street": 200, "city": 100, "postal_code": 20, "region": 100, "country": 2}
ADDRESS_FIELDS = tuple(ADDRESS_LIMITS)


class Account(Base):
    """A company the contacts work for: contacts name it by `account_id`; new ones join it by e-mail domain."""

    __tablename__ = "accounts"
    __table_args__ = (
        # One account per domain: the domain is what new contacts are matched on.
        Index("uq_accounts_domain", "domain", unique=True),
        Index("ix_accounts_tags", "tags", postgresql_using="gin"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    name: Mapped[str] = mapped_column(String(ACCOUNT_NAME_MAX))
    domain: Mapped[str | None] = mapped_column(String(DOMAIN_MAX), default=None)  # lower-case IDNA ASCII
    industry: Mapped[str | None] = mapped_column(String(INDUSTRY_MAX), default=None)
    size_band: Mapped[str | None] = mapped_column(String(10), default=None)
    street: Mapped[str | None] = mapped_column(String(ADDRESS_LIMITS["street"]), default=None)
    city: Mapped[str | None] = mapped_column(String(ADDRESS_LIMITS["city"]), default=None)
    postal_code: Mapped[str | None] = mapped_column(String(ADDRESS_LIMITS["postal_code"]), default=None)
    region: Mapped[str | None] = mapped_column(String(ADDRESS_LIMITS["region"]), default=None)
    country: Mapped[str | None] = mapped_column(String(ADDRESS_LIMITS["country"]), default=None)  # ISO 3166-1
    owner: Mapped[str | None] = mapped_column(String(OWNER_MAX), default=None)
    tags: Mapped[list] = mapped_column(JsonDocument, default=list)  # sorted, unique, lower-case
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    @property
    def address(self) -> dict:
        """The postal address as one block, as the API shows it."""
        return {name: getattr(self, name) for name in ADDRESS_FIELDS}


# The contacts an account with a new domain takes in (accounts.attach_domain), found without reading the rest.
Index("ix_contacts_unassigned_domain", email_domain(Contact.email_normalized),
      postgresql_where=Contact.account_id.is_(None)).ddl_if(dialect="postgresql")

ATTRIBUTE_NAME_MAX = 40
ATTRIBUTE_TYPES = ("string", "number", "date", "boolean", "enum")
ATTRIBUTE_LABEL_MAX = 100
ATTRIBUTE_DESCRIPTION_MAX = 500


class AttributeDefinition(Base):
    """A custom attribute contacts may carry in `attributes`: its name, type, and the options of an enum."""

    __tablename__ = "attribute_definitions"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(ATTRIBUTE_NAME_MAX), unique=True)
    type: Mapped[str] = mapped_column(String(10))
    label: Mapped[str] = mapped_column(String(ATTRIBUTE_LABEL_MAX))
    description: Mapped[str | None] = mapped_column(String(ATTRIBUTE_DESCRIPTION_MAX), default=None)
    options: Mapped[list] = mapped_column(JsonDocument, default=list)  # an enum's allowed values; [] otherwise
    max_length: Mapped[int | None] = mapped_column(Integer, default=None)  # a string's limit
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- interactions (interactions.py) ----------------------------------------------------------------------------

INTERACTION_TYPES = ("call", "meeting", "email", "inquiry", "complaint", "note")
INTERACTION_CHANNELS = ("phone", "email", "sms", "chat", "web", "in_person", "social", "post")
INTERACTION_DIRECTIONS = ("inbound", "outbound")
COMPLAINT_CATEGORIES = ("product", "service", "billing", "delivery", "staff", "other")
COMPLAINT_STATUSES = ("open", "resolved")
INTERACTION_SUMMARY_MAX = 2000
INTERACTION_OUTCOME_MAX = 500
COMPLAINT_RESOLUTION_MAX = 2000
INTERACTION_ACTOR_MAX = 200  # an API key id (the principal), as the idempotency keys store it


class Interaction(Base):
    """One call, meeting, e-mail, inquiry, complaint or note with a person; a complaint is open until resolved.

    Kept by contact id without a foreign key, like consent and feedback: merges move it, erasure removes it.
    """

    __tablename__ = "interactions"
    __table_args__ = (
        # A contact's interactions in the list's default order (newest occurred_at first, seq as tiebreak).
        Index("ix_interactions_contact", "contact_id", "occurred_at", "seq"),
        # Complaints by status across contacts: what termination policies (serial complainers) will read.
        Index("ix_interactions_complaint_status", "status", "contact_id"),
        # Only complaints carry a category and a status; a resolved one says when, by whom and how.
        CheckConstraint("(type = 'complaint' AND category IS NOT NULL AND status IN ('open', 'resolved')"
                        " AND (status = 'resolved') = (resolved_at IS NOT NULL))"
                        " OR (type <> 'complaint' AND category IS NULL AND status IS NULL AND resolution IS NULL"
                        " AND resolved_at IS NULL AND resolved_by IS NULL)", name="ck_interactions_complaint"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    contact_id: Mapped[uuid.UUID]
    type: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str | None] = mapped_column(String(20), default=None)
    direction: Mapped[str | None] = mapped_column(String(10), default=None)
    occurred_at: Mapped[datetime]
    summary: Mapped[str] = mapped_column(String(INTERACTION_SUMMARY_MAX))
    outcome: Mapped[str | None] = mapped_column(String(INTERACTION_OUTCOME_MAX), default=None)
    recorded_by: Mapped[str] = mapped_column(String(INTERACTION_ACTOR_MAX))
    category: Mapped[str | None] = mapped_column(String(20), default=None)
    status: Mapped[str | None] = mapped_column(String(10), default=None)
    resolution: Mapped[str | None] = mapped_column(String(COMPLAINT_RESOLUTION_MAX), default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_by: Mapped[str | None] = mapped_column(String(INTERACTION_ACTOR_MAX), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)


# -- termination evidence: invoice payments and fraud flags (payments.py, fraud_flags.py) -----------------------
#
# Kept by contact id without a foreign key, like interactions: merges move them, erasure removes them.
INVOICE_REFERENCE_MAX = 100
FRAUD_CODE_MAX = 50
FRAUD_REASON_MAX = 1000


class ContactPayment(Base):
    """One invoice of a contact: its amount, when it was due and when (if yet) it was paid (payments.py)."""

    __tablename__ = "contact_payments"
    __table_args__ = (
        # One row per invoice of a contact: recording it twice is a 409 naming it.
        UniqueConstraint("contact_id", "invoice_reference", name="uq_contact_payments_invoice"),
        # A contact's payments by due date: the list and the termination history's window read this.
        Index("ix_contact_payments_contact_due", "contact_id", "due_on"),
        CheckConstraint("amount > 0", name="ck_contact_payments_amount"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    contact_id: Mapped[uuid.UUID]
    invoice_reference: Mapped[str] = mapped_column(String(INVOICE_REFERENCE_MAX))
    amount: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(CURRENCY_LEN))
    due_on: Mapped[date]
    paid_on: Mapped[date | None] = mapped_column(default=None)
    recorded_by: Mapped[str] = mapped_column(String(200))  # the API key (principal) that recorded it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)


class ContactFraudFlag(Base):
    """A suspicion of fraud recorded on a contact; active until cleared with a reason (fraud_flags.py)."""

    __tablename__ = "contact_fraud_flags"
    __table_args__ = (
        Index("ix_contact_fraud_flags_contact", "contact_id", "seq"),
        # A cleared flag says when, by whom and why; an active one none of the three.
        CheckConstraint("(cleared_at IS NULL AND cleared_by IS NULL AND clear_reason IS NULL)"
                        " OR (cleared_at IS NOT NULL AND cleared_by IS NOT NULL AND clear_reason IS NOT NULL)",
                        name="ck_contact_fraud_flags_cleared"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    contact_id: Mapped[uuid.UUID]
    code: Mapped[str] = mapped_column(String(FRAUD_CODE_MAX))
    reason: Mapped[str] = mapped_column(String(FRAUD_REASON_MAX))
    flagged_by: Mapped[str] = mapped_column(String(200))
    flagged_at: Mapped[datetime] = mapped_column(default=utcnow)
    cleared_at: Mapped[datetime | None] = mapped_column(default=None)
    cleared_by: Mapped[str | None] = mapped_column(String(200), default=None)
    clear_reason: Mapped[str | None] = mapped_column(String(FRAUD_REASON_MAX), default=None)

    @property
    def active(self) -> bool:
        """Not cleared: the flag counts as evidence."""
        return self.cleared_at is None


# -- consent and feedback (consent.py, feedback.py) -------------------------------------------------------------

# Kept by contact id without a foreign key, like the purchases: merges and erasure move or remove them.
CONSENT_KEY_MAX = 10  # channel, purpose and status names
CONSENT_SOURCE_MAX = 100
CONSENT_TEXT_VERSION_MAX = 50
FEEDBACK_COMMENT_MAX = 2000
FEEDBACK_LABEL_MAX = 100  # survey and channel labels
PRINCIPAL_MAX = 200  # an API key id, as the idempotency keys store it


class ConsentChange(Base):
    """One consent granted or withdrawn, as recorded: the history behind `Contact.consents` (consent.py)."""

    __tablename__ = "consent_changes"
    __table_args__ = (
        Index("ix_consent_changes_contact", "contact_id", "seq"),
        CheckConstraint("status IN ('granted', 'withdrawn')", name="ck_consent_changes_status"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    contact_id: Mapped[uuid.UUID]
    channel: Mapped[str] = mapped_column(String(CONSENT_KEY_MAX))
    purpose: Mapped[str] = mapped_column(String(CONSENT_KEY_MAX))
    status: Mapped[str] = mapped_column(String(CONSENT_KEY_MAX))
    occurred_at: Mapped[datetime]  # when the person said it
    source: Mapped[str] = mapped_column(String(CONSENT_SOURCE_MAX))
    text_version: Mapped[str | None] = mapped_column(String(CONSENT_TEXT_VERSION_MAX), default=None)
    current: Mapped[bool]  # whether it became the current state when it was recorded
    recorded_by: Mapped[str] = mapped_column(String(PRINCIPAL_MAX))  # the API key (principal) that recorded it
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class Feedback(Base):
    """One survey answer: NPS (0-10) about the relationship, or CSAT (1-5) about one interaction or purchase."""

    __tablename__ = "feedback"
    __table_args__ = (
        Index("ix_feedback_contact", "contact_id", "seq"),
        # The analytics aggregate reads a window of answers from the index alone.
        Index("ix_feedback_occurred_at", "occurred_at", postgresql_include=["kind", "score", "contact_id"]),
        CheckConstraint("(kind = 'nps' AND score BETWEEN 0 AND 10 AND interaction_id IS NULL AND purchase_id IS NULL)"
                        " OR (kind = 'csat' AND score BETWEEN 1 AND 5"
                        " AND (interaction_id IS NULL) <> (purchase_id IS NULL))", name="ck_feedback_kind"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    contact_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(10))
    score: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(String(FEEDBACK_COMMENT_MAX), default=None)
    interaction_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    purchase_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    occurred_at: Mapped[datetime]
    survey: Mapped[str | None] = mapped_column(String(FEEDBACK_LABEL_MAX), default=None)
    channel: Mapped[str | None] = mapped_column(String(FEEDBACK_LABEL_MAX), default=None)
    recorded_by: Mapped[str] = mapped_column(String(PRINCIPAL_MAX))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- imports (imports.py) --------------------------------------------------------------------------------------

IMPORT_STATUSES = ("pending", "running", "completed", "failed")
IMPORT_MESSAGE_MAX = 500
IMPORT_FIELD_MAX = 120  # a contact field, `attributes.<name>` included


class ContactImport(Base):
    """One CSV import: its column mapping, how far the worker got and what it did (imports.py, import_jobs.py).

    `processed` is the checkpoint: the data rows before it are applied, in the same transaction that moved it.
    A worker holds the import by its lease while it runs; a crashed worker's lease expires and another resumes.
    """

    __tablename__ = "contact_imports"
    __table_args__ = (Index("ix_contact_imports_status", "status", "seq"),)

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    mapping: Mapped[dict] = mapped_column(JsonDocument)  # CSV header -> contact field
    total_rows: Mapped[int] = mapped_column(Integer)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(IMPORT_MESSAGE_MAX), default=None)  # why the import failed
    requested_by: Mapped[str] = mapped_column(String(200))  # the API key (principal), or `cli`
    correlation_id: Mapped[str | None] = mapped_column(String(128), default=None)  # the events' correlationid
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ContactImportFile(Base):
    """The uploaded CSV of an import, kept apart so status reads stay small; deleted once the import ends."""

    __tablename__ = "contact_import_files"

    import_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    content: Mapped[str] = mapped_column(types.Text)  # UTF-8 text, without a byte-order mark


class ContactImportError(Base):
    """One value an import refused: the row as a spreadsheet numbers it (the header is row 1), field and why."""

    __tablename__ = "contact_import_errors"
    __table_args__ = (Index("ix_contact_import_errors_import", "import_id", "seq"),)

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    import_id: Mapped[uuid.UUID]
    row: Mapped[int] = mapped_column(Integer)
    field: Mapped[str | None] = mapped_column(String(IMPORT_FIELD_MAX), default=None)  # None: the row as a whole
    message: Mapped[str] = mapped_column(String(IMPORT_MESSAGE_MAX))


# -- merges (merges.py) ----------------------------------------------------------------------------------------

MERGED_BY_MAX = 200  # the API key (principal) that merged, as the idempotency keys store it


class ContactMerge(Base):
    """The tombstone of a merged contact: which contact it became, when, by whom, and what moved (merges.py).

    The merged id keeps answering (tombstones.py): reads are sent on to the survivor, writes refused naming it.
    It holds ids and counts only, no personal data.
    """

    __tablename__ = "contact_merges"

    merged_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    survivor_id: Mapped[uuid.UUID] = mapped_column(index=True)  # at the time; it may have been merged on since
    merged_at: Mapped[datetime] = mapped_column(default=utcnow)
    merged_by: Mapped[str] = mapped_column(String(MERGED_BY_MAX))
    moved: Mapped[dict] = mapped_column(JsonDocument, default=dict)  # record kind (table) -> rows moved
    filled: Mapped[list] = mapped_column(JsonDocument, default=list)  # survivor fields taken from the merged one


# -- erasures (erasure.py) -------------------------------------------------------------------------------------

ERASURE_STATUSES = ("erasing", "completed")
ERASURE_SERVICE_MAX = 40  # a service name (the registry's names are at most 40 characters)


class Erasure(Base):
    """A person's erasure (GDPR art. 17): done here in one transaction, confirmed by every service (erasure.py).

    Holds ids and counts only. The erased contact id keeps answering 410 naming it (tombstones.py).
    """

    __tablename__ = "erasures"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    contact_id: Mapped[uuid.UUID] = mapped_column(unique=True)  # one erasure per contact; erasing again finds it
    status: Mapped[str] = mapped_column(String(10), default="erasing")
    erased: Mapped[dict] = mapped_column(JsonDocument, default=dict)  # table -> rows erased by the request
    # The services that must confirm, from the worker's bindings; None until the worker first handles the erasure.
    expected_services: Mapped[list | None] = mapped_column(JsonDocument, default=None)
    event_id: Mapped[uuid.UUID]  # the crm.contact.erased outbox row (it carries the e-mail): purged on completion
    requested_by: Mapped[str] = mapped_column(String(200))  # the API key (principal), as idempotency keys store it
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)


class ErasureConfirmation(Base):
    """One service's word that it erased the person (crm.erasure.completed; contacts records its own directly)."""

    __tablename__ = "erasure_confirmations"

    erasure_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    service: Mapped[str] = mapped_column(String(ERASURE_SERVICE_MAX), primary_key=True)
    confirmed_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- analytics (analytics/) --------------------------------------------------------------------------------------
#
# Money in the analytics tables is BIGINT in units of 1/10,000 of the currency (`*_units`): exact sums on both
# PostgreSQL and SQLite (which would add decimal strings as floats). The API turns them back into Decimals.

REFRESH_STATUSES = ("pending", "running", "completed", "failed", "superseded")
REFRESH_TRIGGERS = ("api", "schedule", "cli", "request")
UnitsType = types.BigInteger()
_RUNNING_SQL = "status = 'running'"
ANALYTICS_FILLFACTOR = 50  # customer_analytics: see the table


class AnalyticsRefresh(Base):
    """One computation of every measure for one currency at one instant (`as_of`), with its parameters.

    The snapshot's rows are `customer_analytics` rows with this refresh's id; `summary` holds each measure's
    per-class summary (analytics/summaries.py), so a report reads one row. The newest completed refresh of a
    currency is the current snapshot; older ones are `superseded` and their rows deleted.
    """

    __tablename__ = "analytics_refreshes"
    __table_args__ = (
        Index("ix_analytics_refreshes_current", "currency", "status", "seq"),
        Index("ix_analytics_refreshes_status", "status", "seq"),
        UniqueConstraint("currency", "schedule_slot", name="uq_analytics_refreshes_slot"),
        # One refresh per currency runs at a time (analytics/refresh.py): settles two claims racing for it.
        Index("uq_analytics_refreshes_running", "currency", unique=True,
              postgresql_where=text(_RUNNING_SQL), sqlite_where=text(_RUNNING_SQL)),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    trigger: Mapped[str] = mapped_column(String(10))
    currency: Mapped[str] = mapped_column(String(CURRENCY_LEN))
    as_of: Mapped[datetime]  # the instant the measures describe; the window ends here
    parameters: Mapped[dict] = mapped_column(JsonDocument)  # analytics/params.py Parameters.to_json()
    schedule_slot: Mapped[int | None] = mapped_column(types.BigInteger, default=None)  # scheduled runs only
    step: Mapped[str | None] = mapped_column(String(20), default=None)  # the step running or last done
    steps_done: Mapped[int] = mapped_column(Integer, default=0)
    steps_total: Mapped[int] = mapped_column(Integer, default=0)
    customers: Mapped[int | None] = mapped_column(Integer, default=None)  # rows in the snapshot
    summary: Mapped[dict] = mapped_column(JsonDocument, default=dict)  # measure -> summary
    timings: Mapped[dict] = mapped_column(JsonDocument, default=dict)  # step -> seconds
    error: Mapped[str | None] = mapped_column(String(500), default=None)
    requested_by: Mapped[str] = mapped_column(String(200))
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CustomerAnalytics(Base):
    """One contact's measures in one snapshot (refresh). Formulas: docs/analytics.md."""

    __tablename__ = "customer_analytics"
    __table_args__ = (
        Index("ix_customer_analytics_contact", "contact_id"),
        # Every measure pass rewrites each row of its snapshot once: room on the page lets PostgreSQL keep the
        # new version there (a HOT update: no index entries, the old version pruned in place) instead of
        # writing both indexes again and leaving a dead row for VACUUM. Halved the passes' time at 100,000.
        # No index on a measure column (abc_class, rfm_segment, ...): every pass would then write it, and the
        # readers (reports, the contact list's filters, segments) read one snapshot by refresh_id first.
        {"postgresql_with": {"fillfactor": ANALYTICS_FILLFACTOR}},
    )

    refresh_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # the base pass: window = [as_of - window_days, as_of); lifetime = everything before as_of; this currency
    purchases_window: Mapped[int] = mapped_column(Integer, default=0)
    revenue_window_units: Mapped[int] = mapped_column(UnitsType, default=0)  # net of returns in the window
    margin_window_units: Mapped[int] = mapped_column(UnitsType, default=0)
    cost_window_units: Mapped[int] = mapped_column(UnitsType, default=0)
    purchase_count: Mapped[int] = mapped_column(Integer, default=0)
    revenue_total_units: Mapped[int] = mapped_column(UnitsType, default=0)
    margin_total_units: Mapped[int] = mapped_column(UnitsType, default=0)
    cost_total_units: Mapped[int] = mapped_column(UnitsType, default=0)
    first_purchase_at: Mapped[datetime | None] = mapped_column(default=None)
    last_purchase_at: Mapped[datetime | None] = mapped_column(default=None)
    purchases_all_currencies: Mapped[int] = mapped_column(Integer, default=0)  # the lifecycle reads these two
    last_purchase_any_at: Mapped[datetime | None] = mapped_column(default=None)
    # this currency's purchases in [as_of - 730 days, as_of - 365 days) and [as_of - 365 days, as_of): the
    # snapshot's retention (analytics/measures.py retention()) counts customers, not purchases, from these
    purchases_year_before: Mapped[int] = mapped_column(Integer, default=0)
    purchases_last_year: Mapped[int] = mapped_column(Integer, default=0)
    # the measures (None: the customer is outside the measure's population)
    abc_class: Mapped[str | None] = mapped_column(String(1), default=None)
    abc_rank: Mapped[int | None] = mapped_column(Integer, default=None)
    abc_cumulative_units: Mapped[int | None] = mapped_column(UnitsType, default=None)  # revenue up to this rank
    recency_score: Mapped[int | None] = mapped_column(SmallInteger, default=None)
    frequency_score: Mapped[int | None] = mapped_column(SmallInteger, default=None)
    monetary_score: Mapped[int | None] = mapped_column(SmallInteger, default=None)
    rfm_segment: Mapped[str | None] = mapped_column(String(20), default=None)
    predicted_margin_units: Mapped[int | None] = mapped_column(UnitsType, default=None)
    clv_units: Mapped[int | None] = mapped_column(UnitsType, default=None)
    current_profit_units: Mapped[int | None] = mapped_column(UnitsType, default=None)
    quadrant: Mapped[str | None] = mapped_column(String(10), default=None)
    pyramid_level: Mapped[str | None] = mapped_column(String(10), default=None)
    stage: Mapped[str | None] = mapped_column(String(10), default=None)
    stage_source: Mapped[str | None] = mapped_column(String(100), default=None)  # "rules" or the plugin's name


class ContactStage(Base):
    """A contact's current lifecycle stage, whichever currency's refresh set it; a change publishes
    crm.contact.stage_changed (analytics/stages.py)."""

    __tablename__ = "contact_stages"

    contact_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    stage: Mapped[str] = mapped_column(String(10))
    previous_stage: Mapped[str | None] = mapped_column(String(10), default=None)
    source: Mapped[str] = mapped_column(String(100), default="rules")
    refresh_id: Mapped[uuid.UUID]
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- saved segments (segments/) ------------------------------------------------------------------------------------

SEGMENT_NAME_MAX = 100
SEGMENT_DESCRIPTION_MAX = 1000


class Segment(Base):
    """A saved rule set over contacts (segments/grammar.py); members are computed in SQL."""

    __tablename__ = "segments"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    name: Mapped[str] = mapped_column(String(SEGMENT_NAME_MAX), unique=True)
    description: Mapped[str | None] = mapped_column(String(SEGMENT_DESCRIPTION_MAX), default=None)
    rules: Mapped[dict] = mapped_column(JsonDocument)
    currency: Mapped[str] = mapped_column(String(CURRENCY_LEN))  # the money and measures its rules read
    member_count: Mapped[int | None] = mapped_column(Integer, default=None)  # at the last membership refresh
    members_refreshed_at: Mapped[datetime | None] = mapped_column(default=None)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)


class SegmentMember(Base):
    """A contact in a segment as of the last membership refresh (the basis of crm.segment.entered|left)."""

    __tablename__ = "segment_members"
    __table_args__ = (Index("ix_segment_members_contact", "contact_id"),)

    segment_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    entered_at: Mapped[datetime] = mapped_column(default=utcnow)


# Termination policies, runs, recommendations and decisions (services/common/termination, docs/termination.md).
Termination = termination_models(Base)
