"""The gateway's own table: API keys, stored as a public prefix plus a SHA-256 hash (never the key)."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import String, types
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
