"""Saved segments: creating, changing and deleting them, and reading their members and counts live.

A segment's rules are checked (grammar.py) when it is saved and stored in their canonical form. Members and
counts are computed when asked, in one statement over the current snapshot (sql.py), so they always reflect
the contacts as they are now and the measures as of the last refresh. `segment_members` is something else: the
membership as of the last analytics refresh, kept so the next refresh can announce who entered and who left
(membership.py). Saving new rules therefore announces nothing; the next refresh does.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from services.common.db import new_id, utcnow
from services.common.etags import NO_PRECONDITION, Precondition
from services.common.pagination import decode_cursor, encode_cursor, paginate
from services.common.problems import Conflict, NotFound
from services.common.uow import UnitOfWork, insert_or_reread

from ..analytics.snapshots import money
from ..models import AttributeDefinition, Segment, SegmentMember
from . import sql
from .grammar import Rule, attribute_names, parse_rules, to_document

READ_SCOPE = "contacts:read"
SORTS = {"name": Segment.name, "created_at": Segment.created_at, "updated_at": Segment.updated_at}
CHANGEABLE = ("name", "description", "rules", "currency")


# -- rules ----------------------------------------------------------------------------------------------------

def definitions_for(session: Session, document) -> dict[str, AttributeDefinition]:
    """The definitions of the custom attributes a rule document names, in one query (none when it names none)."""
    names = attribute_names(document)
    if not names:
        return {}
    return {d.name: d for d in session.scalars(select(AttributeDefinition).where(AttributeDefinition.name.in_(names)))}


def checked_rules(session: Session, document) -> Rule:
    """The rule tree of a document, its attributes typed by their definitions; a 422 naming each mistake."""
    return parse_rules(document, definitions_for(session, document))


# -- reading members ------------------------------------------------------------------------------------------

def member_view(row) -> dict:
    """One member as the API shows it: the contact and its measures (money as Decimals)."""
    values = row._mapping
    shown = {name: values[name] for name in ("id", "email", "first_name", "last_name", "abc_class",
                                             "recency_score", "frequency_score", "monetary_score", "rfm_segment",
                                             "quadrant", "pyramid_level", "stage")}
    for name in ("clv", "predicted_margin", "current_profit"):
        shown[name] = money(values[f"{name}_units"])
    return shown


def members_page(session: Session, rule: Rule, currency: str, now: datetime, *, limit: int,
                 cursor: str | None) -> dict:
    """One page of the contacts a rule matches now, in contact order; one query."""
    after = decode_cursor(cursor)
    rows = session.execute(sql.members_statement(rule, currency, now, after_seq=after, limit=limit + 1)).all()
    next_cursor = encode_cursor(rows[limit - 1].seq) if len(rows) > limit else None
    return {"items": [member_view(row) for row in rows[:limit]], "next_cursor": next_cursor}


def _count(session: Session, rule: Rule, currency: str, now: datetime) -> int:
    return session.scalar(sql.count_statement(rule, currency, now))


# -- use cases --------------------------------------------------------------------------------------------------

def _by_name(session: Session, name: str) -> Segment | None:
    return session.scalar(select(Segment).where(Segment.name == name))


def _duplicate(holder: Segment) -> Conflict:
    return Conflict(f"Segment {holder.id} already has the name {holder.name!r}.", existing_segment_id=str(holder.id)
                    ).for_readers(READ_SCOPE, otherwise="Another segment already has this name.")


def _segment(session: Session, segment_id: uuid.UUID, *, lock: bool = False) -> Segment:
    stmt = select(Segment).where(Segment.id == segment_id)
    segment = session.scalar(stmt.with_for_update() if lock else stmt)
    if segment is None:
        raise NotFound(f"No segment with id {segment_id}.")
    return segment


def create_segment(uow: UnitOfWork, data: Mapping, *, created_by: str, base_currency: str) -> Segment:
    """Save a segment (rules checked, stored canonical); a name another segment has is a 409."""
    with uow:
        session = uow.session
        rules = to_document(checked_rules(session, data["rules"]))
        holder = _by_name(session, data["name"])
        if holder is not None:
            raise _duplicate(holder)
        now = utcnow()
        segment = Segment(id=new_id(), name=data["name"], description=data.get("description"), rules=rules,
                          currency=data.get("currency") or base_currency, created_by=created_by, created_at=now,
                          updated_at=now, version=1)
        # A concurrent create may take the name first: its insert holds ours until it commits.
        holder = insert_or_reread(session, segment, reread=lambda: _by_name(session, segment.name))
        if holder is not None:
            raise _duplicate(holder)
        uow.commit()
        return segment


def get_segment(uow: UnitOfWork, segment_id: uuid.UUID) -> Segment:
    """One segment (404 when unknown)."""
    with uow:
        return _segment(uow.session, segment_id)


def list_segments(uow: UnitOfWork, *, limit: int, cursor: str | None, sort: str | None = None,
                  currency: str | None = None) -> dict:
    """Segments newest first (or by `sort`), optionally of one currency."""
    stmt = select(Segment)
    if currency:
        stmt = stmt.where(Segment.currency == currency)
    with uow:
        return paginate(uow.session, stmt, Segment.seq, limit=limit, cursor=cursor, sort=sort, columns=SORTS)


def update_segment(uow: UnitOfWork, segment_id: uuid.UUID, requested: Mapping, *,
                   precondition: Precondition = NO_PRECONDITION) -> Segment:
    """Change a segment's name, description, rules or currency (If-Match optional); announces nothing itself."""
    with uow:
        session = uow.session
        segment = _segment(session, segment_id, lock=True)
        precondition.check(segment.version, required=False, what=f"segment {segment_id}")
        values = {name: requested[name] for name in CHANGEABLE if name in requested}
        if "rules" in values:
            values["rules"] = to_document(checked_rules(session, values["rules"]))
        changes = {name: value for name, value in values.items() if getattr(segment, name) != value}
        if not changes:
            return segment
        if "name" in changes:
            holder = _by_name(session, changes["name"])
            if holder is not None:
                raise _duplicate(holder)
        for name, value in changes.items():
            setattr(segment, name, value)
        segment.version += 1
        segment.updated_at = utcnow()
        holder = insert_or_reread(session, reread=lambda: _by_name(session, segment.name))
        if holder is not None and holder.id != segment.id:
            raise _duplicate(holder)
        uow.commit()
        return segment


def delete_segment(uow: UnitOfWork, segment_id: uuid.UUID, *, precondition: Precondition = NO_PRECONDITION) -> None:
    """Delete a segment and its recorded membership (no crm.segment.left: the segment is gone, not the people)."""
    with uow:
        session = uow.session
        segment = _segment(session, segment_id, lock=True)
        precondition.check(segment.version, required=False, what=f"segment {segment_id}")
        session.execute(delete(SegmentMember).where(SegmentMember.segment_id == segment_id))
        session.delete(segment)
        uow.commit()


def segment_members(uow: UnitOfWork, segment_id: uuid.UUID, *, limit: int, cursor: str | None,
                    now: datetime | None = None) -> dict:
    """The segment's members as of now (live, in contact order), with their measures."""
    with uow:
        session = uow.session
        segment = _segment(session, segment_id)
        rule = checked_rules(session, segment.rules)
        return members_page(session, rule, segment.currency, now or utcnow(), limit=limit, cursor=cursor)


def segment_count(uow: UnitOfWork, segment_id: uuid.UUID, *, now: datetime | None = None) -> dict:
    """How many contacts the segment matches now, beside the count at the last membership refresh."""
    now = now or utcnow()
    with uow:
        session = uow.session
        segment = _segment(session, segment_id)
        rule = checked_rules(session, segment.rules)
        return {"segment_id": segment.id, "count": _count(session, rule, segment.currency, now), "as_of": now,
                "member_count": segment.member_count, "members_refreshed_at": segment.members_refreshed_at}


def preview_segment(uow: UnitOfWork, document, *, currency: str, limit: int, now: datetime | None = None) -> dict:
    """What a rule document would match now, without saving it: the count and the first page of members."""
    now = now or utcnow()
    with uow:
        session = uow.session
        rule = checked_rules(session, document)
        page = members_page(session, rule, currency, now, limit=limit, cursor=None)
        return {"rules": to_document(rule), "currency": currency, "as_of": now,
                "count": _count(session, rule, currency, now), **page}
