"""The gateway's own tables: API keys, stored as a public prefix plus a SHA-256 hash (never the key), and the
revision counter that lets every gateway process see a revocation at once."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Integer, String, types
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import SeqType, make_base, new_id, utcnow

Base = make_base()


class ApiKey(Base):
    """An API key of an internal app (with scopes) or of a partner (bound to one partner id)."""

    __tablename__ = "api_keys"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(types.Uuid, unique=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))  # "internal" | "partner"
    prefix: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    key_hash: Mapped[str] = mapped_column(String(64))  # hex SHA-256 of the whole key
    scopes: Mapped[list] = mapped_column(default=list)
    partner_id: Mapped[uuid.UUID | None] = mapped_column(types.Uuid, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    @property
    def revoked(self) -> bool:
        """True once the key has been revoked."""
        return self.revoked_at is not None


# The key list's `sort=` names and what each orders by.
KEY_SORTS = {"created_at": ApiKey.created_at, "name": ApiKey.name, "last_used_at": ApiKey.last_used_at,
             "revoked_at": ApiKey.revoked_at}


# The id of the one row of api_key_revisions.
REVISION_ROW = 1


class KeyRevision(Base):
    """A counter bumped in the same transaction as every revocation (one row, id 1).

    Each gateway process reads it once per request (a primary-key lookup) and trusts its cached keys only while
    it still holds the value they were loaded at, so a revocation through any process takes effect at once.
    """

    __tablename__ = "api_key_revisions"
    __table_args__ = (CheckConstraint("id = 1", name="ck_api_key_revisions_one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
