"""The partners service's tables: partners, their contracts, every version of the terms, outbox and inbox."""
from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import JsonDocument, SeqType, make_base, messaging_models, new_id, utcnow
from services.common.idempotency import idempotency_model
from services.common.termination.models import termination_models

Base = make_base()
OutboxMessage, InboxEntry = messaging_models(Base)
IdempotencyRecord = idempotency_model(Base)

PARTNER_TYPES = ("supplier", "vendor", "distributor", "reseller")
PARTNER_STATUSES = ("prospect", "onboarding", "active", "suspended", "terminated")

# The columns of one version of a contract's terms, in the order the API shows them.
TERM_FIELDS = (
    "payment_terms_days", "discount_percent", "delivery_lead_time_days", "minimum_order_volume", "currency",
    "effective_from", "effective_to", "auto_renew", "notice_period_days",
)


class Partner(Base):
    __tablename__ = "partners"
    __table_args__ = (
        Index("ix_partners_status_seq", "status", "seq"),
        Index("ix_partners_type_seq", "type", "seq"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="prospect")
    country: Mapped[str | None] = mapped_column(String(2), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)


class Contract(Base):
    """A contract with one partner; its terms live in `contract_terms`, one row per version."""

    __tablename__ = "contracts"
    __table_args__ = (Index("ix_contracts_partner_seq", "partner_id", "seq"),)

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    title: Mapped[str] = mapped_column(String(200))
    # The version of the terms in force; it is also the contract's ETag, W/"<current_version>".
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ContractTerms(Base):
    """One version of a contract's terms. Rows are only ever added: old versions stay as they were."""

    __tablename__ = "contract_terms"
    __table_args__ = (
        UniqueConstraint("contract_id", "version", name="uq_contract_terms_version"),
        CheckConstraint("discount_percent >= 0 AND discount_percent <= 100", name="ck_contract_terms_discount"),
        CheckConstraint("effective_to IS NULL OR effective_to > effective_from", name="ck_contract_terms_period"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    payment_terms_days: Mapped[int] = mapped_column(Integer)
    # Percent and money are exact decimals. Their precision stays within 15 significant digits, so the
    # values survive SQLite too, which keeps NUMERIC as a float.
    discount_percent: Mapped[Decimal] = mapped_column(Numeric(5, 2))
    delivery_lead_time_days: Mapped[int] = mapped_column(Integer)
    minimum_order_volume: Mapped[Decimal] = mapped_column(Numeric(15, 3))
    currency: Mapped[str] = mapped_column(String(3))
    effective_from: Mapped[date]
    effective_to: Mapped[date | None] = mapped_column(default=None)
    auto_renew: Mapped[bool] = mapped_column(default=False)
    notice_period_days: Mapped[int] = mapped_column(Integer, default=0)
    changed_by: Mapped[str | None] = mapped_column(String(200), default=None)  # the API key that made this version
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# Each list's `sort=` names and what each orders by. The contract list's term names order by the terms in force.
PARTNER_SORTS = {"created_at": Partner.created_at, "updated_at": Partner.updated_at, "name": Partner.name,
                 "status": Partner.status, "type": Partner.type, "country": Partner.country}
TERMS_SORTS = {"version": ContractTerms.version, "effective_from": ContractTerms.effective_from,
               "effective_to": ContractTerms.effective_to, "discount_percent": ContractTerms.discount_percent}
CONTRACT_SORTS = {"created_at": Contract.created_at, "updated_at": Contract.updated_at, "title": Contract.title,
                  **{name: TERMS_SORTS[name] for name in ("effective_from", "effective_to", "discount_percent")}}


# -- negotiation (proposals.py) ---------------------------------------------------------------------------------

PROPOSAL_STATUSES = ("open", "accepted", "rejected", "countered", "expired")
PROPOSAL_SIDES = ("internal", "partner")
_OPEN_PROPOSAL_SQL = "status = 'open'"


class Proposal(Base):
    """A set of term changes one side offers the other against one version of a contract's terms.

    Rows are never deleted: a counter-proposal is a new row naming the one it supersedes, so the thread is the
    contract's proposals in order. `changes` holds the proposed terms in their JSON form (decimals and dates as
    strings), exactly as the API shows them and the events carry them.
    """

    __tablename__ = "proposals"
    __table_args__ = (
        # At most one open proposal per contract: of two submitted at once, the second insert fails (409).
        Index("uq_proposals_open_contract", "contract_id", unique=True,
              postgresql_where=text(_OPEN_PROPOSAL_SQL), sqlite_where=text(_OPEN_PROPOSAL_SQL)),
        Index("ix_proposals_contract_seq", "contract_id", "seq"),
        # The expiry job's scan: open proposals by expiry.
        Index("ix_proposals_status_expires_at", "status", "expires_at"),
        CheckConstraint("proposed_by IN ('internal', 'partner')", name="ck_proposals_proposed_by"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id", ondelete="CASCADE"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    base_version: Mapped[int] = mapped_column(Integer)  # the terms version the changes were made against
    changes: Mapped[dict] = mapped_column(JsonDocument)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    expires_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20), default="open")
    proposed_by: Mapped[str] = mapped_column(String(10))
    proposed_by_key: Mapped[str | None] = mapped_column(String(200), default=None)
    supersedes_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("proposals.id"), default=None)
    decided_by_key: Mapped[str | None] = mapped_column(String(200), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    terms_version: Mapped[int | None] = mapped_column(Integer, default=None)  # made by accepting
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)


# -- renewals and expiry (renewals.py) ----------------------------------------------------------------------------

NOTICE_KINDS = ("expiring", "expired", "renewed")


class ContractNotice(Base):
    """A notice published about one terms version's period; the primary key makes it once, whichever worker."""

    __tablename__ = "contract_notices"
    __table_args__ = (CheckConstraint("kind IN ('expiring', 'expired', 'renewed')", name="ck_contract_notices_kind"),)

    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    published_at: Mapped[datetime] = mapped_column(default=utcnow)


# The renewal job and `?expiring_within=` look for terms by their end date.
Index("ix_contract_terms_effective_to", ContractTerms.effective_to)


# -- deliveries (deliveries.py, scorecards.py) ---------------------------------------------------------------------


class Delivery(Base):
    """One order a partner delivered (or failed to), recorded by an internal app; scorecards are computed from these.

    Rows are facts and are never changed. `delivered_on` is null when nothing arrived. `agreed_amount` is what the
    order would have cost at the contract's price, when the recording app knows it: price adherence needs it.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("partner_id", "order_reference", name="uq_deliveries_partner_order"),
        Index("ix_deliveries_partner_promised", "partner_id", "promised_on"),
        Index("ix_deliveries_partner_seq", "partner_id", "seq"),
        Index("ix_deliveries_delivered_on", "delivered_on"),  # risk: every partner's spend of the last 12 months
        CheckConstraint("quantity_ordered > 0", name="ck_deliveries_ordered"),
        CheckConstraint("quantity_delivered >= 0 AND quantity_delivered <= quantity_ordered",
                        name="ck_deliveries_delivered"),
        CheckConstraint("quantity_rejected >= 0 AND quantity_rejected <= quantity_delivered",
                        name="ck_deliveries_rejected"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    contract_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contracts.id"), default=None)
    order_reference: Mapped[str] = mapped_column(String(100))
    promised_on: Mapped[date]
    delivered_on: Mapped[date | None] = mapped_column(default=None)
    quantity_ordered: Mapped[Decimal] = mapped_column(Numeric(15, 3))
    quantity_delivered: Mapped[Decimal] = mapped_column(Numeric(15, 3))
    quantity_rejected: Mapped[Decimal] = mapped_column(Numeric(15, 3), default=Decimal("0"))
    amount: Mapped[Decimal] = mapped_column(Numeric(15, 2))
    agreed_amount: Mapped[Decimal | None] = mapped_column(Numeric(15, 2), default=None)
    currency: Mapped[str] = mapped_column(String(3))
    recorded_by: Mapped[str | None] = mapped_column(String(200), default=None)  # the API key that recorded it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


DELIVERY_SORTS = {"created_at": Delivery.created_at, "promised_on": Delivery.promised_on,
                  "delivered_on": Delivery.delivered_on, "order_reference": Delivery.order_reference,
                  "amount": Delivery.amount}


# -- disputes (disputes.py) -----------------------------------------------------------------------------------------

DISPUTE_CATEGORIES = ("quality", "quantity", "delay", "price", "invoice")
DISPUTE_STATUSES = ("open", "investigating", "resolved", "escalated")
DISPUTE_RESOLUTIONS = ("credit_note", "replacement", "rejected_claim")
DISPUTE_SIDES = ("internal", "partner")


class Dispute(Base):
    """A claim about a contract, a delivery or an invoice, opened by either side; resolved means closed.

    `delivery_id` names a row of `deliveries` without a foreign key: the deliveries table belongs to another
    part of the service, and the dispute service checks the delivery's partner itself.
    """

    __tablename__ = "disputes"
    __table_args__ = (
        Index("ix_disputes_partner_seq", "partner_id", "seq"),
        # The SLA job's scan: unresolved disputes by age.
        Index("ix_disputes_status_opened_at", "status", "opened_at"),
        CheckConstraint("amount >= 0", name="ck_disputes_amount"),
        CheckConstraint("(status = 'resolved') = (resolution IS NOT NULL)", name="ck_disputes_resolution"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    contract_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contracts.id"), default=None)
    delivery_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    invoice_reference: Mapped[str | None] = mapped_column(String(100), default=None)
    category: Mapped[str] = mapped_column(String(20))
    amount: Mapped[Decimal] = mapped_column(Numeric(15, 2))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20), default="open")
    resolution: Mapped[str | None] = mapped_column(String(20), default=None)
    opened_by: Mapped[str] = mapped_column(String(10))
    opened_by_key: Mapped[str | None] = mapped_column(String(200), default=None)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    # When crm.dispute.overdue was recorded; set in the same transaction, so the event is recorded once.
    overdue_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)


class DisputeMessage(Base):
    """One message of a dispute's thread, from either side; messages are only ever added."""

    __tablename__ = "dispute_messages"
    __table_args__ = (Index("ix_dispute_messages_dispute_seq", "dispute_id", "seq"),)

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    dispute_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("disputes.id", ondelete="CASCADE"))
    side: Mapped[str] = mapped_column(String(10))
    author_key: Mapped[str | None] = mapped_column(String(200), default=None)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


DISPUTE_SORTS = {"opened_at": Dispute.opened_at, "updated_at": Dispute.updated_at, "status": Dispute.status,
                 "category": Dispute.category, "amount": Dispute.amount}


# Termination policies, runs, recommendations and decisions (services/common/termination, docs/termination.md).
Termination = termination_models(Base)
