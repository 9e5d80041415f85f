"""The partners service's tables: partners, their contracts, every version of the terms, outbox and inbox."""
from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import SeqType, make_base, messaging_models, new_id, utcnow
from services.common.idempotency import idempotency_model

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


# -- renewals and expiry (renewals.py) ----------------------------------------------------------------------------


# -- deliveries (deliveries.py, scorecards.py) ---------------------------------------------------------------------


# -- disputes (disputes.py) -----------------------------------------------------------------------------------------
