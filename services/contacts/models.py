"""The contacts service's tables: contacts, and its outbox and inbox."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import SeqType, make_base, messaging_models, new_id, utcnow

Base = make_base()
OutboxMessage, InboxEntry = messaging_models(Base)

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
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)
