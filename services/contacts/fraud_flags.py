"""Fraud flags on a contact: a suspicion recorded with a code and a reason, active until cleared with a reason.

What the fraud termination policy reads (termination_history.py: the flags active at `as_of`). Recording and
clearing each publish `crm.contact.flagged` (`cleared` false, then true); the reasons stay in this service,
where the flag's `fraud_flag` entry on the contact's timeline shows them (rewritten when it is cleared).
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.common.db import new_id, utcnow
from services.common.pagination import paginate
from services.common.problems import Conflict
from services.common.uow import UnitOfWork

from . import timeline
from .models import Contact, ContactFraudFlag
from .tombstones import contact_row, hold_contact, missing_contact

READ_SCOPE = "contacts:read"
SORTS = {"flagged_at": ContactFraudFlag.flagged_at}


def event_data(flag: ContactFraudFlag) -> dict:
    """The `crm.contact.flagged` data of `flag` as it stands (recorded, or cleared)."""
    cleared = flag.cleared_at is not None
    return {"flag_id": flag.id, "contact_id": flag.contact_id, "code": flag.code, "cleared": cleared,
            "occurred_at": flag.cleared_at if cleared else flag.flagged_at}


def timeline_entry(flag: ContactFraudFlag) -> dict:
    """The flag's `fraud_flag` row in the timeline, keyed by its id: active with its reason, or cleared and why."""
    cleared = flag.cleared_at is not None
    summary = (f"Fraud flag {flag.code} cleared: {flag.clear_reason}" if cleared
               else f"Fraud flag {flag.code}: {flag.reason}")
    data = {"flag_id": str(flag.id), "code": flag.code, "status": "cleared" if cleared else "active",
            "reason": flag.reason, "cleared_at": flag.cleared_at.isoformat() if cleared else None,
            "clear_reason": flag.clear_reason}
    return timeline.entry(id=flag.id, kind="fraud_flag", occurred_at=flag.flagged_at, source=timeline.CONTACTS,
                          contact_id=flag.contact_id, summary=summary, data=data)


def _get(session: Session, contact_id: uuid.UUID, flag_id: uuid.UUID, *, lock: bool = False) -> ContactFraudFlag:
    return contact_row(session, ContactFraudFlag, contact_id, flag_id, what="fraud flag", lock=lock)


def flag_contact(uow: UnitOfWork, contact_id: uuid.UUID, data: Mapping, *, flagged_by: str) -> ContactFraudFlag:
    """Record a fraud flag on a contact; it is active until cleared."""
    with uow:
        session = uow.session
        hold_contact(session, contact_id)
        flag = ContactFraudFlag(id=new_id(), contact_id=contact_id, code=data["code"], reason=data["reason"],
                                flagged_by=flagged_by, flagged_at=utcnow())
        session.add(flag)
        timeline.add_entries(session, [timeline_entry(flag)])
        uow.add_event("crm.contact.flagged", event_data(flag), subject=contact_id)
        uow.commit()
        return flag


def get_flag(uow: UnitOfWork, contact_id: uuid.UUID, flag_id: uuid.UUID) -> ContactFraudFlag:
    """One fraud flag of a contact (404 when either is unknown)."""
    with uow:
        return _get(uow.session, contact_id, flag_id)


def list_flags(uow: UnitOfWork, contact_id: uuid.UUID, *, limit: int, cursor: str | None, sort: str | None = None,
               active: bool | None = None) -> dict:
    """A contact's fraud flags, newest first by default; `active` keeps only the uncleared (or only the cleared)."""
    stmt = select(ContactFraudFlag).where(ContactFraudFlag.contact_id == contact_id)
    if active is not None:
        cleared_at = ContactFraudFlag.cleared_at
        stmt = stmt.where(cleared_at.is_(None) if active else cleared_at.is_not(None))
    with uow:
        session = uow.session
        page = paginate(session, stmt, ContactFraudFlag.seq, limit=limit, cursor=cursor, sort=sort, columns=SORTS)
        if not page["items"] and session.scalar(select(Contact.seq).where(Contact.id == contact_id)) is None:
            raise missing_contact(session, contact_id)
        return page


def clear_flag(uow: UnitOfWork, contact_id: uuid.UUID, flag_id: uuid.UUID, *, reason: str,
               cleared_by: str) -> ContactFraudFlag:
    """Clear an active fraud flag, saying why; a flag is cleared once (409 after that)."""
    with uow:
        session = uow.session
        flag = _get(session, contact_id, flag_id, lock=True)
        if flag.cleared_at is not None:
            raise Conflict(f"Fraud flag {flag_id} was already cleared.", cleared_at=flag.cleared_at.isoformat()
                           ).for_readers(READ_SCOPE, otherwise="This fraud flag cannot be cleared.")
        flag.cleared_at, flag.cleared_by, flag.clear_reason = utcnow(), cleared_by, reason
        timeline.refresh_entry(session, timeline_entry(flag))
        uow.add_event("crm.contact.flagged", event_data(flag), subject=contact_id)
        uow.commit()
        return flag
