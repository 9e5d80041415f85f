"""The loyalty service's tables: programs, members, purchases and their returns, the points ledger, messaging."""
from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Numeric,
    String,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import Mapped, column_property, mapped_column

from services.common.db import SeqType, make_base, messaging_models, new_id, utcnow
from services.common.idempotency import idempotency_model

Base = make_base()
OutboxMessage, InboxEntry = messaging_models(Base)
IdempotencyRecord = idempotency_model(Base)

# Money and rates: exact decimals, 4 places (never float).
Money = Numeric(18, 4)
# A share from 0 to 1 (a program's default margin rate), 4 places.
Rate = Numeric(5, 4)
# Points are whole numbers; 64-bit so that sums over a long ledger never overflow.
Points = BigInteger()

# `return` takes back the points a purchase earned for the share of it that was returned (returns.py).
EARN, REDEEM, ADJUST, REVERSE, RETURN = "earn", "redeem", "adjust", "reverse", "return"
ENTRY_KINDS = (EARN, REDEEM, ADJUST, REVERSE, RETURN)


class Program(Base):
    """A loyalty program: how many points one unit of its currency earns, and whether contacts join on their own."""

    __tablename__ = "programs"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    code: Mapped[str] = mapped_column(String(50), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    points_per_unit: Mapped[Decimal] = mapped_column(Money)
    auto_enrol: Mapped[bool] = mapped_column(Boolean, default=False)
    # The margin of a purchase that gives none: amount x rate (service.derived_margin); None: no margin then.
    margin_rate: Mapped[Decimal | None] = mapped_column(Rate, default=None)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class FrozenContact(Base):
    """A terminated contact (crm.contact.terminated): its memberships, present and future, are frozen (freezes.py)."""

    __tablename__ = "frozen_contacts"

    contact_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    frozen_at: Mapped[datetime] = mapped_column()
    reason: Mapped[str | None] = mapped_column(String(500), default=None)
    # The termination decision in the contacts service that ended the relationship; None when inherited by a merge.
    recommendation_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    decision_id: Mapped[uuid.UUID | None] = mapped_column(default=None)


class Member(Base):
    """A contact's membership of one program; its balance is derived from the ledger, never stored."""

    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("program_id", "contact_id", name="uq_members_program_contact"),)

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"), index=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(index=True)
    tier: Mapped[str | None] = mapped_column(String(50), default=None)  # placeholder until tiers ship
    enrolled_via: Mapped[str] = mapped_column(String(20))  # "api" | "event" | "purchase"
    enrolled_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Closed by a contact merge (merges.py): the membership its points and purchases moved to.
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    # Frozen while its contact is recorded as terminated (freezes.py): purchases earn nothing, redemptions are
    # refused. Read from `frozen_contacts` in the statement that loads the member (a correlated subquery each), never
    # stored on the membership: a membership created or moved to a terminated contact is frozen with nothing to write.
    frozen_at: Mapped[datetime | None] = column_property(
        select(FrozenContact.frozen_at).where(FrozenContact.contact_id == contact_id).scalar_subquery())
    frozen_reason: Mapped[str | None] = column_property(
        select(FrozenContact.reason).where(FrozenContact.contact_id == contact_id).scalar_subquery())


class Purchase(Base):
    """A purchase a member made; `external_id` (the caller's receipt number) is unique per program."""

    __tablename__ = "purchases"
    __table_args__ = (
        # Several NULLs are allowed on both databases: only purchases with a receipt number are de-duplicated.
        UniqueConstraint("program_id", "external_id", name="uq_purchases_program_external_id"),
        CheckConstraint("amount > 0", name="ck_purchases_amount_positive"),
        CheckConstraint("margin >= 0 AND margin <= amount", name="ck_purchases_margin_within_amount"),
        CheckConstraint("discount >= 0", name="ck_purchases_discount_not_negative"),
        CheckConstraint("returned_amount >= 0 AND returned_amount <= amount", name="ck_purchases_returned_within_amount"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(200), default=None)
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    occurred_at: Mapped[datetime] = mapped_column()
    points: Mapped[int] = mapped_column(Points, default=0)
    # What the business made on it (given, or amount x the program's margin_rate) and what the buyer was let off.
    margin: Mapped[Decimal | None] = mapped_column(Money, default=None)
    discount: Mapped[Decimal | None] = mapped_column(Money, default=None)
    # Its returns added up (returns.py), so what is left to return is read from this one locked row.
    returned_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    returned_margin: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    points_reclaimed: Mapped[int] = mapped_column(Points, default=0)
    # The coupon it was bought with, as the caller wrote it; and whether it was made on a frozen membership
    # (it then earned nothing, whatever the plugins would have awarded).
    coupon_code: Mapped[str | None] = mapped_column(String(64), default=None)
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PurchaseReturn(Base):
    """Part or all of a purchase given back; the points it had earned for that part are taken back (returns.py)."""

    __tablename__ = "purchase_returns"
    __table_args__ = (
        CheckConstraint("amount > 0", name="ck_purchase_returns_amount_positive"),
        CheckConstraint("margin >= 0 AND margin <= amount", name="ck_purchase_returns_margin_within_amount"),
        Index("ix_purchase_returns_purchase_seq", "purchase_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    purchase_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("purchases.id"))
    amount: Mapped[Decimal] = mapped_column(Money)
    margin: Mapped[Decimal | None] = mapped_column(Money, default=None)  # the margin given back with it
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(String(500), default=None)
    occurred_at: Mapped[datetime] = mapped_column()
    points: Mapped[int] = mapped_column(Points, default=0)  # taken back (>= 0)
    # Owed for this return but not taken back, because the member had spent them (returns.py).
    points_unrecovered: Mapped[int] = mapped_column(Points, default=0)
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ledger_entries.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LedgerEntry(Base):
    """One append-only movement of points; a member's balance is the sum of its entries."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("kind IN ('earn', 'redeem', 'adjust', 'reverse', 'return')", name="ck_ledger_entries_kind"),
        Index("ix_ledger_entries_member_seq", "member_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(10))
    points: Mapped[int] = mapped_column(Points)  # signed: + earns, - spends
    balance_after: Mapped[int] = mapped_column(Points)
    reason: Mapped[str | None] = mapped_column(String(500), default=None)
    purchase_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("purchases.id"), default=None, index=True)
    # A reversal names the entry it undoes (each entry can be reversed once) and that entry's kind.
    reverses_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ledger_entries.id"), unique=True, default=None)
    reversed_kind: Mapped[str | None] = mapped_column(String(10), default=None)
    # Explainability of an earn: [{plugin, code, points, reason}] and the plugins that failed to contribute.
    factors: Mapped[list] = mapped_column(default=list)
    degraded: Mapped[list] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# Each list's `sort=` names and what each orders by. A member's balance is derived from the ledger, not stored,
# so it is not among them: ordering by it would sum every member's ledger for each page.
PROGRAM_SORTS = {"created_at": Program.created_at, "updated_at": Program.updated_at, "name": Program.name,
                 "code": Program.code}
MEMBER_SORTS = {"enrolled_at": Member.enrolled_at, "tier": Member.tier}
TRANSACTION_SORTS = {"created_at": LedgerEntry.created_at, "points": LedgerEntry.points}
