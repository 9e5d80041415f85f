"""The leads service's tables: leads, their touches, and its outbox and inbox."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import SeqType, make_base, messaging_models, new_id, utcnow
from services.common.idempotency import idempotency_model

Base = make_base()
OutboxMessage, InboxEntry = messaging_models(Base)
IdempotencyRecord = idempotency_model(Base)

OPEN_STATUSES = ("new", "contacted", "qualified")
STATUSES = OPEN_STATUSES + ("converting", "converted", "disqualified")
_OPEN_SQL = "status IN ('new', 'contacted', 'qualified')"


class Lead(Base):
    __tablename__ = "leads"
    __table_args__ = (
        # At most one open lead per person: a second capture becomes a touch on the first.
        Index("uq_leads_open_email", "email_normalized", unique=True,
              postgresql_where=text(_OPEN_SQL), sqlite_where=text(_OPEN_SQL)),
        Index("ix_leads_status_seq", "status", "seq"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    email: Mapped[str] = mapped_column(String(254))
    email_normalized: Mapped[str] = mapped_column(String(254), index=True)
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    company: Mapped[str | None] = mapped_column(String(200))
    job_title: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(50))
    source: Mapped[str | None] = mapped_column(String(50), index=True)
    campaign: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="new")
    score: Mapped[int] = mapped_column(Integer, default=0, index=True)
    score_factors: Mapped[list] = mapped_column(default=list)
    score_degraded: Mapped[list] = mapped_column(default=list)
    contact_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    touch_count: Mapped[int] = mapped_column(Integer, default=1)
    conversion_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    converted_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)


# The lead list's `sort=` names and what each orders by; the e-mail case-insensitively, as it is matched.
LEAD_SORTS = {"created_at": Lead.created_at, "updated_at": Lead.updated_at, "score": Lead.score,
              "status": Lead.status, "last_name": Lead.last_name, "company": Lead.company,
              "email": Lead.email_normalized}


class LeadTouch(Base):
    """One capture of a lead: the first form fill, and every later one for the same open lead."""

    __tablename__ = "lead_touches"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    lead_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    source: Mapped[str | None] = mapped_column(String(50))
    campaign: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
