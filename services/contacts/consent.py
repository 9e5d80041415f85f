"""Consent per channel and purpose: every change kept as history, the current state on the contact row.

People say yes and no at different times through different systems (a web form, a call centre, an import),
and those statements reach us in any order. The current state per `channel:purpose` is therefore the
newest statement by when the person made it (`occurred_at`), not the last one recorded; at equal times a
withdrawal wins, so a tie never leaves someone subscribed who also said no.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.common.db import new_id, utcnow
from services.common.pagination import paginate
from services.common.problems import Unprocessable
from services.common.uow import UnitOfWork

from .models import ConsentChange, Contact
from .timeline import add_entries, entry
from .tombstones import missing_contact

GRANTED, WITHDRAWN = "granted", "withdrawn"
STATUSES = (GRANTED, WITHDRAWN)
# A statement may carry a clock a little ahead of ours; one further ahead is a mistake, not a fact.
MAX_CLOCK_SKEW = timedelta(minutes=5)
TIMELINE_SOURCE = "contacts"


# -- pure rules -------------------------------------------------------------------------------------------

def consent_key(channel: str, purpose: str) -> str:
    """The key of a channel and purpose in `Contact.consents`, e.g. `email:marketing`."""
    return f"{channel}:{purpose}"


def supersedes(change: Mapping, current: Mapping | None) -> bool:
    """True when `change` replaces `current` (the stored state of its key, or None).

    The newer statement wins; at equal times a withdrawal wins over a grant. Anything else (an older
    statement, or the same status again at the same time) leaves the current state as it is.
    """
    if current is None:
        return True
    current_at = datetime.fromisoformat(current["occurred_at"])
    if change["occurred_at"] != current_at:
        return change["occurred_at"] > current_at
    return change["status"] == WITHDRAWN and current["status"] == GRANTED


def state_of(change: Mapping) -> dict:
    """The current-state entry a change leaves under its key (JSON: the time as ISO 8601 text)."""
    return {"status": change["status"], "occurred_at": change["occurred_at"].isoformat(),
            "source": change["source"], "text_version": change.get("text_version")}


def apply_changes(consents: Mapping, changes: Sequence[Mapping]) -> tuple[dict, list[bool]]:
    """The consents once `changes` are applied in order, and for each change whether it became current."""
    state = dict(consents)
    became_current = []
    for change in changes:
        key = consent_key(change["channel"], change["purpose"])
        wins = supersedes(change, state.get(key))
        if wins:
            state[key] = state_of(change)
        became_current.append(wins)
    return state, became_current


def change_problems(change: Mapping, now: datetime) -> dict[str, list[str]]:
    """What is wrong with one change beyond its shape: a grant names the text agreed to; no time to come."""
    problems = {}
    if change["status"] == GRANTED and not change.get("text_version"):
        problems["text_version"] = ["Required for a grant: the version of the consent text the person agreed to."]
    if change["occurred_at"] > now + MAX_CLOCK_SKEW:
        problems["occurred_at"] = ["Lies in the future; send when the person gave or withdrew consent."]
    return problems


# -- use cases --------------------------------------------------------------------------------------------

def _summary(change: Mapping) -> str:
    return f"{change['channel']} {change['purpose']} consent {change['status']} ({change['source']})"


def record_consent_changes(uow: UnitOfWork, contact_id: uuid.UUID, changes: Sequence[Mapping], *,
                           recorded_by: str) -> dict:
    """Record consent changes of one contact, all or none; the current state takes the ones that supersede it.

    Each change is kept in the history, announced as `crm.consent.changed` and added to the timeline, in one
    transaction. The contact's version goes up only when its current consents changed.
    """
    now = utcnow()
    changes = [{**change, "occurred_at": (change.get("occurred_at") or now).astimezone(timezone.utc)}
               for change in changes]
    problems = {str(index): found for index, change in enumerate(changes) if (found := change_problems(change, now))}
    if problems:
        raise Unprocessable("Some consent changes are not valid.", errors={"changes": problems})
    with uow:
        session = uow.session
        # Locked: two requests for one person apply their changes one after the other, never over each other.
        contact = session.scalar(select(Contact).where(Contact.id == contact_id).with_for_update()
                                 .execution_options(populate_existing=True))
        if contact is None:
            raise missing_contact(session, contact_id)
        state, became_current = apply_changes(contact.consents or {}, changes)
        if any(became_current):
            contact.consents = state
            contact.version += 1
        rows = [ConsentChange(id=new_id(), contact_id=contact_id, channel=change["channel"],
                              purpose=change["purpose"], status=change["status"], occurred_at=change["occurred_at"],
                              source=change["source"], text_version=change.get("text_version"), current=current,
                              recorded_by=recorded_by, recorded_at=now)
                for change, current in zip(changes, became_current)]
        session.add_all(rows)
        for row in rows:
            uow.add_event("crm.consent.changed",
                          {"contact_id": contact_id, "channel": row.channel, "purpose": row.purpose,
                           "status": row.status, "occurred_at": row.occurred_at, "source": row.source,
                           "text_version": row.text_version, "current": row.current}, subject=contact_id)
        add_entries(session, [
            entry(id=row.id, kind="consent", occurred_at=row.occurred_at, source=TIMELINE_SOURCE,
                  contact_id=contact_id, summary=_summary(change),
                  data={"channel": row.channel, "purpose": row.purpose, "status": row.status,
                        "source": row.source, "text_version": row.text_version, "current": row.current})
            for row, change in zip(rows, changes)])
        uow.commit()
        return {"contact_id": contact_id, "version": contact.version, "consents": contact.consents, "changes": rows}


def _contact_exists(session: Session, contact_id: uuid.UUID) -> bool:
    return session.scalar(select(Contact.seq).where(Contact.id == contact_id)) is not None


# What the history may be sorted by (`sort=`); without one, the most recently recorded first.
SORTS = {"occurred_at": ConsentChange.occurred_at, "recorded_at": ConsentChange.recorded_at}


def list_consent_changes(uow: UnitOfWork, contact_id: uuid.UUID, *, limit: int, cursor: str | None,
                         channel: str | None = None, purpose: str | None = None, sort: str | None = None) -> dict:
    """A contact's consent history (by default the most recently recorded first), optionally for one channel or purpose."""
    stmt = select(ConsentChange).where(ConsentChange.contact_id == contact_id)
    if channel:
        stmt = stmt.where(ConsentChange.channel == channel)
    if purpose:
        stmt = stmt.where(ConsentChange.purpose == purpose)
    with uow:
        page = paginate(uow.session, stmt, ConsentChange.seq, limit=limit, cursor=cursor, sort=sort, columns=SORTS)
        # Only an empty page needs to tell "no such contact" from "no history (yet)".
        if not page["items"] and not _contact_exists(uow.session, contact_id):
            raise missing_contact(uow.session, contact_id)
        return page
