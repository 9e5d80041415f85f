"""Interactions with a person (calls, meetings, e-mails, inquiries, complaints, notes): each also on the timeline."""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.common.db import new_id, utcnow
from services.common.etags import NO_PRECONDITION, Precondition
from services.common.pagination import paginate
from services.common.problems import Conflict, Unprocessable
from services.common.uow import UnitOfWork

from . import timeline
from .models import Contact, Interaction
from .tombstones import contact_row, hold_contact, missing_contact

# How far ahead of this server's clock an occurred_at may be: the caller's clock may run a little fast.
FUTURE_SKEW = timedelta(minutes=5)
# Nothing recorded about a living customer happened earlier; it also keeps year-1 times (which cannot be
# turned into UTC) from reaching the database.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
# A note is written down, not exchanged: it needs no channel or direction.
UNDIRECTED_TYPES = ("note",)
COMPLAINT = "complaint"
OPEN, RESOLVED = "open", "resolved"
READ_SCOPE = "contacts:read"
SORTS = {"occurred_at": Interaction.occurred_at, "created_at": Interaction.created_at}
_LABELS = {"call": "Call", "meeting": "Meeting", "email": "E-mail", "inquiry": "Inquiry", "complaint": "Complaint",
           "note": "Note"}


# -- pure rules -------------------------------------------------------------------------------------------

def _refuse(errors: dict[str, list[str]]) -> Unprocessable:
    return Unprocessable(f"The interaction has invalid fields: {', '.join(sorted(errors))}.", errors=errors)


def check_new(data: Mapping, *, now: datetime) -> None:
    """Refuse (422, naming each field) a new interaction that breaks a rule the schema cannot see."""
    errors: dict[str, list[str]] = {}
    kind = data["type"]
    occurred_at = data.get("occurred_at")
    if occurred_at is not None and occurred_at > now + FUTURE_SKEW:
        errors["occurred_at"] = ["Must not be in the future."]
    if occurred_at is not None and occurred_at < EARLIEST:
        errors["occurred_at"] = ["Must not be before 1900."]
    if kind == COMPLAINT and not data.get("category"):
        errors["category"] = ["A complaint needs a category."]
    if kind != COMPLAINT and data.get("category") is not None:
        errors["category"] = ["Only a complaint has a category."]
    if kind not in UNDIRECTED_TYPES:
        for name in ("channel", "direction"):
            if not data.get(name):
                errors[name] = [f"A {kind} needs a {name}."]
    if errors:
        raise _refuse(errors)


def check_change(kind: str, status: str | None, requested: Mapping) -> None:
    """Refuse a change an interaction of `kind` in `status` cannot take: 422 naming the field, 409 to reopen."""
    errors: dict[str, list[str]] = {}
    if kind != COMPLAINT:
        for name in ("status", "resolution"):
            if name in requested:
                errors[name] = [f"Only a complaint has a {name}."]
        if errors:
            raise _refuse(errors)
        return
    wanted = requested.get("status", status)
    if wanted == OPEN and status == RESOLVED:
        raise Conflict("A resolved complaint stays resolved; record a new complaint instead.", current_status=status
                       ).for_readers(READ_SCOPE, otherwise="This interaction cannot take that change.")
    if wanted == RESOLVED and status == OPEN and not requested.get("resolution"):
        errors["resolution"] = ["Say how the complaint was resolved."]
    if wanted == OPEN and "resolution" in requested:
        errors["resolution"] = ["Only a resolved complaint has a resolution: send it with status resolved."]
    if errors:
        raise _refuse(errors)


def changed_values(interaction: Interaction, requested: Mapping) -> dict:
    """The requested values that differ from the stored ones (an unchanged PATCH is a no-op)."""
    return {name: value for name, value in requested.items() if getattr(interaction, name) != value}


def timeline_summary(interaction: Interaction) -> str:
    """The one line the timeline shows, e.g. "Complaint about billing, open (inbound, email): Charged twice"."""
    label = _LABELS[interaction.type]
    if interaction.type == COMPLAINT:
        label = f"{label} about {interaction.category}, {interaction.status}"
    how = ", ".join(part.replace("_", " ") for part in (interaction.direction, interaction.channel) if part)
    return f"{label} ({how}): {interaction.summary}" if how else f"{label}: {interaction.summary}"


def timeline_entry(interaction: Interaction) -> dict:
    """The interaction's row in the timeline (kind `complaint` or `interaction`), keyed by its id."""
    data = {"interaction_id": str(interaction.id), "type": interaction.type, "channel": interaction.channel,
            "direction": interaction.direction, "outcome": interaction.outcome}
    if interaction.type == COMPLAINT:
        data.update(category=interaction.category, status=interaction.status,
                    resolved_at=interaction.resolved_at.isoformat() if interaction.resolved_at else None)
    return timeline.entry(id=interaction.id, kind=COMPLAINT if interaction.type == COMPLAINT else "interaction",
                          occurred_at=interaction.occurred_at, source=timeline.CONTACTS,
                          contact_id=interaction.contact_id, summary=timeline_summary(interaction), data=data)


# -- queries ----------------------------------------------------------------------------------------------

def _get(session: Session, contact_id: uuid.UUID, interaction_id: uuid.UUID, *, lock: bool = False) -> Interaction:
    return contact_row(session, Interaction, contact_id, interaction_id, what="interaction", lock=lock)


# -- use cases --------------------------------------------------------------------------------------------

def record_interaction(uow: UnitOfWork, contact_id: uuid.UUID, data: Mapping, *, recorded_by: str) -> Interaction:
    """Record an interaction with a contact and add it to the contact's timeline; a complaint starts open."""
    now = utcnow()
    check_new(data, now=now)
    complaint = data["type"] == COMPLAINT
    with uow:
        session = uow.session
        hold_contact(session, contact_id)
        interaction = Interaction(
            id=new_id(), contact_id=contact_id, type=data["type"], channel=data.get("channel"),
            direction=data.get("direction"), occurred_at=data.get("occurred_at") or now, summary=data["summary"],
            outcome=data.get("outcome"), recorded_by=recorded_by, category=data.get("category"),
            status=OPEN if complaint else None, created_at=now, updated_at=now, version=1)
        session.add(interaction)
        timeline.add_entries(session, [timeline_entry(interaction)])
        uow.add_event("crm.interaction.recorded", {
            "interaction_id": interaction.id, "contact_id": contact_id, "type": interaction.type,
            "channel": interaction.channel, "direction": interaction.direction,
            "occurred_at": interaction.occurred_at, "category": interaction.category}, subject=contact_id)
        uow.commit()
        return interaction


def get_interaction(uow: UnitOfWork, contact_id: uuid.UUID, interaction_id: uuid.UUID) -> Interaction:
    """One interaction of a contact (404 when either is unknown)."""
    with uow:
        return _get(uow.session, contact_id, interaction_id)


def list_interactions(uow: UnitOfWork, contact_id: uuid.UUID, *, limit: int, cursor: str | None,
                      sort: str | None = None, type: list[str] | None = None, status: str | None = None) -> dict:
    """A contact's interactions, one page at a time, narrowed by type(s) and complaint status."""
    stmt = select(Interaction).where(Interaction.contact_id == contact_id)
    if type:
        stmt = stmt.where(Interaction.type.in_(type))
    if status:
        stmt = stmt.where(Interaction.status == status)
    with uow:
        session = uow.session
        page = paginate(session, stmt, Interaction.seq, limit=limit, cursor=cursor, sort=sort, columns=SORTS)
        # An empty page is the only case where the contact may be unknown: check it then, not on every page.
        if not page["items"] and session.scalar(select(Contact.seq).where(Contact.id == contact_id)) is None:
            raise missing_contact(session, contact_id)
        return page


def update_interaction(uow: UnitOfWork, contact_id: uuid.UUID, interaction_id: uuid.UUID, requested: Mapping, *,
                       actor: str, precondition: Precondition = NO_PRECONDITION) -> Interaction:
    """Correct an interaction's summary or outcome, or resolve a complaint; If-Match refuses lost updates."""
    with uow:
        session = uow.session
        # Locked, so the version check, the rules and the write are one step under concurrent PATCHes.
        interaction = _get(session, contact_id, interaction_id, lock=True)
        precondition.check(interaction.version, required=False, what=f"interaction {interaction_id}")
        check_change(interaction.type, interaction.status, requested)
        changes = changed_values(interaction, requested)
        if not changes:
            return interaction
        for name, value in changes.items():
            setattr(interaction, name, value)
        if changes.get("status") == RESOLVED:
            interaction.resolved_at, interaction.resolved_by = utcnow(), actor
        interaction.version += 1
        timeline.refresh_entry(session, timeline_entry(interaction))
        uow.commit()
        return interaction
