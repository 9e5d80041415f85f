"""The customer 360: one newest-first stream of everything that happened to a person, across the suite.

Contacts keeps it as a projection (`timeline_entries`): its own records (interactions, feedback, consent,
invoice payments, fraud flags, a termination) add their entry in the same transaction; other services' events
add theirs in the consumer (handlers.py), built here by `from_event`. Lead events arrive before the lead has a
contact: they carry the lead id only and join the person's stream through `contact_leads`, which every
conversion fills (`link_leads`).
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal

from sqlalchemy import exists, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from services.common.catalog import Event
from services.common.db import utcnow
from services.common.pagination import paginate
from services.common.uow import UnitOfWork

from .models import Contact, ContactLead, TimelineEntry
from .tombstones import missing_contact, survivors

# Every kind the stream shows (filter with ?kind=); docs/api-contacts.md says what each holds.
KINDS = ("interaction", "complaint", "lead_created", "lead_touched", "lead_converted", "purchase",
         "purchase_returned", "points_earned", "points_redeemed", "points_adjusted", "points_reclaimed", "enrolled",
         "tier_changed", "offer_sent", "feedback", "consent", "payment", "fraud_flag", "terminated")
SUMMARY_MAX = 500
SOURCE_MAX = 40
CONTACTS = "contacts"  # the source of the entries this service records itself
# Newest first: by when it happened, then by arrival (seq) among entries of the same instant.
NEWEST_FIRST = "-occurred_at"
_ORDER = {"occurred_at": TimelineEntry.occurred_at}
SORTS = tuple(_ORDER)  # `sort=occurred_at` reads the stream from its start
_ENTRIES = TimelineEntry.__table__
_LINKS = ContactLead.__table__


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
    rows: dict = {}
    for row in entries:
        rows.setdefault(row["id"], row)  # the same record twice in one batch: the first one counts
    if not rows:
        return
    moved = survivors(session, {row["contact_id"] for row in rows.values()})
    if moved:
        rows = {key: {**row, "contact_id": moved.get(row["contact_id"], row["contact_id"])} for key, row in rows.items()}
    # The table, not the mapped class: an ORM bulk insert splits the rows by which values are null.
    if session.get_bind().dialect.name == "postgresql":
        stmt = pg_insert(_ENTRIES).on_conflict_do_nothing(index_elements=["id"])
    else:
        stmt = insert(_ENTRIES).prefix_with("OR IGNORE")
    session.execute(stmt, list(rows.values()))


def refresh_entry(session: Session, row: Mapping) -> None:
    """Replace the summary and data of the entry with `row`'s id (its record was corrected or resolved)."""
    session.execute(update(TimelineEntry).where(TimelineEntry.id == row["id"])
                    .values(summary=row["summary"], data=row["data"]))


def link_leads(session: Session, links: Iterable[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Record which contact each (lead id, contact id) lead became or was matched to; a known lead stays as it is."""
    rows = [{"lead_id": lead_id, "contact_id": contact_id} for lead_id, contact_id in dict(links).items()]
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        stmt = pg_insert(_LINKS).on_conflict_do_nothing(index_elements=["lead_id"])
    else:
        stmt = insert(_LINKS).prefix_with("OR IGNORE")
    session.execute(stmt, rows)


# -- other services' events -------------------------------------------------------------------------------

def _text(value) -> str | None:
    """A value as the JSON `data` keeps it: ids, amounts and times as strings."""
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _data(event: Event, *names: str) -> dict:
    return {name: _text(event.data.get(name)) for name in names}


def _source(event: Event) -> str:
    # "/services/loyalty" -> "loyalty"
    return event.source.rstrip("/").rsplit("/", 1)[-1][:SOURCE_MAX] or "unknown"


def _entry(event: Event, kind: str, **fields) -> dict:
    return entry(kind=kind, source=_source(event), **fields)


def _signed(points: int) -> str:
    return f"+{points}" if points > 0 else str(points)


def _lead_created(event: Event) -> dict:
    d = event.data
    via = f" from {d['source']}" if d.get("source") else ""
    return _entry(event, "lead_created", id=event.id, lead_id=d["lead_id"], occurred_at=event.time,
                  summary=f"Lead captured{via}, score {d['score']}", data=_data(event, "lead_id", "source", "score"))


def _lead_touched(event: Event) -> dict:
    d = event.data
    via = " / ".join(part for part in (d.get("source"), d.get("campaign")) if part)
    # Keyed by the touch, so the same touch published again adds nothing.
    return _entry(event, "lead_touched", id=d["touch_id"], lead_id=d["lead_id"], occurred_at=d["occurred_at"],
                  summary=f"Lead captured again{f' from {via}' if via else ''}",
                  data=_data(event, "lead_id", "touch_id", "source", "campaign"))


def _purchase(event: Event) -> dict:
    d = event.data
    points = f", {d['points']} points" if d.get("points") is not None else ""
    # Keyed by the purchase, so a purchase published again under a new event id adds nothing.
    return _entry(event, "purchase", id=d["purchase_id"], contact_id=d["contact_id"], occurred_at=d["occurred_at"],
                  summary=f"Purchase {_text(d['amount'])} {d['currency']}{points}",
                  data=_data(event, "purchase_id", "amount", "currency", "points", "external_id", "member_id",
                             "program_id"))


def _purchase_returned(event: Event) -> dict:
    d = event.data
    points = f", {d['points']} points taken back" if d.get("points") else ""
    why = f": {d['reason']}" if d.get("reason") else ""
    # Keyed by the return, like a purchase by the purchase.
    return _entry(event, "purchase_returned", id=d["return_id"], contact_id=d["contact_id"],
                  occurred_at=d["occurred_at"], summary=f"Returned {_text(d['amount'])} {d['currency']}{points}{why}",
                  data=_data(event, "return_id", "purchase_id", "amount", "currency", "points", "reason", "member_id",
                             "program_id"))


# Points entries are keyed by their loyalty transaction, like purchases by the purchase.
def _points_earned(event: Event) -> dict:
    d = event.data
    return _entry(event, "points_earned", id=d["transaction_id"], contact_id=d["contact_id"],
                  occurred_at=event.time, summary=f"Earned {d['points']} points (balance {d['balance']})",
                  data=_data(event, "transaction_id", "points", "balance", "purchase_id", "member_id", "program_id"))


def _points_redeemed(event: Event) -> dict:
    d = event.data
    why = f": {d['reason']}" if d.get("reason") else ""
    return _entry(event, "points_redeemed", id=d["transaction_id"], contact_id=d["contact_id"],
                  occurred_at=event.time, summary=f"Redeemed {d['points']} points (balance {d['balance']}){why}",
                  data=_data(event, "transaction_id", "points", "balance", "reason", "member_id", "program_id"))


def _points_adjusted(event: Event) -> dict:
    d = event.data
    what = "reversed" if d["kind"] == "reverse" else "adjusted"
    why = f": {d['reason']}" if d.get("reason") else ""
    return _entry(event, "points_adjusted", id=d["transaction_id"], contact_id=d["contact_id"],
                  occurred_at=event.time,
                  summary=f"Points {what} by {_signed(d['points'])} (balance {d['balance']}){why}",
                  data=_data(event, "transaction_id", "kind", "points", "balance", "reverses_id", "reason",
                             "member_id", "program_id"))


def _points_reclaimed(event: Event) -> dict:
    d = event.data
    return _entry(event, "points_reclaimed", id=d["transaction_id"], contact_id=d["contact_id"],
                  occurred_at=event.time,
                  summary=f"{d['points']} points taken back for a return (balance {d['balance']})",
                  data=_data(event, "transaction_id", "points", "balance", "purchase_id", "return_id", "member_id",
                             "program_id"))


def _enrolled(event: Event) -> dict:
    d = event.data
    return _entry(event, "enrolled", id=event.id, contact_id=d["contact_id"], occurred_at=event.time,
                  summary="Enrolled in the loyalty program", data=_data(event, "member_id", "program_id"))


def _tier_changed(event: Event) -> dict:
    d = event.data
    tier, previous = d.get("tier"), d.get("previous_tier")
    if tier and previous:
        summary = f"Tier changed from {previous} to {tier}"
    elif tier:
        summary = f"Reached tier {tier}"
    else:
        summary = f"Left tier {previous}" if previous else "Tier cleared"
    return _entry(event, "tier_changed", id=event.id, contact_id=d["contact_id"], occurred_at=d["occurred_at"],
                  summary=summary, data=_data(event, "tier", "previous_tier", "member_id", "program_id"))


def _offer_sent(event: Event) -> dict:
    d = event.data
    name = f" “{d['name']}”" if d.get("name") else ""
    return _entry(event, "offer_sent", id=event.id, contact_id=d["contact_id"], occurred_at=d["occurred_at"],
                  summary=f"Offer{name} sent by {d['channel']}", data=_data(event, "offer_id", "name", "channel"))


# Event type -> the entry it adds.
_PROJECTIONS: dict[str, Callable[[Event], dict]] = {
    "crm.lead.created": _lead_created,
    "crm.lead.touched": _lead_touched,
    "crm.purchase.recorded": _purchase,
    "crm.purchase.returned": _purchase_returned,
    "crm.points.earned": _points_earned,
    "crm.points.redeemed": _points_redeemed,
    "crm.points.adjusted": _points_adjusted,
    "crm.points.reclaimed": _points_reclaimed,
    "crm.member.enrolled": _enrolled,
    "crm.member.tier_changed": _tier_changed,
    "crm.offer.sent": _offer_sent,
}
PROJECTED_TYPES = tuple(_PROJECTIONS)


def from_event(event: Event) -> dict:
    """The timeline entry another service's event adds (a type in PROJECTED_TYPES)."""
    return _PROJECTIONS[event.type](event)


def conversion_entry(event: Event, contact_id: uuid.UUID, matched: bool) -> dict:
    """The `lead_converted` entry of a crm.lead.converted event, once the lead became (or matched) `contact_id`."""
    d = event.data
    summary = "Lead converted, matched to this existing contact" if matched else "Lead converted into this contact"
    return entry(id=event.id, kind="lead_converted", occurred_at=event.time, source=_source(event),
                 contact_id=contact_id, lead_id=d["lead_id"], summary=summary,
                 data={**_data(event, "lead_id", "source", "score"), "contact_id": str(contact_id), "matched": matched})


# -- reading ----------------------------------------------------------------------------------------------

def timeline_statement(contact_id: uuid.UUID, kinds: Iterable[str] | None = None):
    """SELECT the entries of a contact and of every lead it came from, only while the contact exists."""
    leads = select(ContactLead.lead_id).where(ContactLead.contact_id == contact_id)
    stmt = select(TimelineEntry).where(
        or_(TimelineEntry.contact_id == contact_id, TimelineEntry.lead_id.in_(leads)),
        # Entries can name a contact that is not (or no longer) there, e.g. a purchase that came first.
        exists(select(Contact.seq).where(Contact.id == contact_id)))
    kinds = sorted(set(kinds or ()))
    if kinds:
        stmt = stmt.where(TimelineEntry.kind.in_(kinds))
    return stmt


def list_timeline(uow: UnitOfWork, contact_id: uuid.UUID, *, limit: int, cursor: str | None,
                  kinds: Iterable[str] | None = None, sort: str | None = None) -> dict:
    """One page of a contact's timeline, newest first (or oldest first), optionally only some kinds: one query."""
    with uow:
        session = uow.session
        page = paginate(session, timeline_statement(contact_id, kinds), TimelineEntry.seq, limit=limit,
                        cursor=cursor, sort=sort or NEWEST_FIRST, columns=_ORDER)
        # Only an empty page may mean an unknown contact: the second query runs on that path alone.
        if not page["items"] and session.scalar(select(Contact.seq).where(Contact.id == contact_id)) is None:
            raise missing_contact(session, contact_id)
        return page
