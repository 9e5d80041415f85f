"""The customer 360: one newest-first stream of everything that happened to a person, across the suite.

Contacts keeps it as a projection (`timeline_entries`): its own records (interactions, feedback, consent) add
their entry in the same transaction; other services' events add theirs in the consumer (handlers.py).
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from services.common.db import utcnow

from .models import TimelineEntry

# Every kind the stream shows (filter with ?kind=); docs/api-contacts.md says what each holds.
KINDS = ("interaction", "complaint", "lead_created", "lead_touched", "lead_converted", "purchase",
         "points_earned", "points_redeemed", "points_adjusted", "enrolled", "tier_changed", "offer_sent",
         "feedback", "consent")
SUMMARY_MAX = 500


def entry(*, id: uuid.UUID, kind: str, occurred_at: datetime, source: str, contact_id: uuid.UUID | None = None,
          lead_id: uuid.UUID | None = None, summary: str | None = None, data: Mapping | None = None) -> dict:
    """One timeline row, as add_entries takes it."""
    if kind not in KINDS:
        raise ValueError(f"unknown timeline kind {kind!r}")
    if contact_id is None and lead_id is None:
        raise ValueError("a timeline entry belongs to a contact or a lead")
    return {"id": id, "kind": kind, "occurred_at": occurred_at, "source": source, "contact_id": contact_id,
            "lead_id": lead_id, "summary": summary[:SUMMARY_MAX] if summary else None, "data": dict(data or {}),
            "recorded_at": utcnow()}


def add_entries(session: Session, entries: Iterable[Mapping]) -> None:
    """Add timeline rows in one statement; an entry whose id is already there is skipped (redelivery)."""
    rows = list(entries)
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        stmt = pg_insert(TimelineEntry).on_conflict_do_nothing(index_elements=["id"])
    else:
        stmt = insert(TimelineEntry).prefix_with("OR IGNORE")
    session.execute(stmt, rows)
