"""Lead use cases: the only code that changes lead state, each in one unit of work."""
from __future__ import annotations

import uuid

from sqlalchemy import and_, bindparam, select, update

from services.common.db import utcnow
from services.common.emails import normalize_email
from services.common.pagination import paginate
from services.common.problems import Conflict, NotFound
from services.common.uow import UnitOfWork, insert_or_reread

from .models import LEAD_SORTS, OPEN_STATUSES, Lead, LeadTouch
from .policies import apply_score

PROFILE_FIELDS = ("first_name", "last_name", "company", "job_title", "phone")
READ_SCOPE = "leads:read"
TOUCHES_SHOWN = 50


def _open_lead(session, email_normalized: str) -> Lead | None:
    return session.scalar(select(Lead).where(Lead.email_normalized == email_normalized,
                                             Lead.status.in_(OPEN_STATUSES)))


def _get(session, lead_id: uuid.UUID) -> Lead:
    lead = session.scalar(select(Lead).where(Lead.id == lead_id))
    if lead is None:
        raise NotFound(f"No lead with id {lead_id}.")
    return lead


def _record_touch(uow: UnitOfWork, lead: Lead, data: dict, plugins) -> None:
    """A repeated capture: keep the first values, fill gaps, count and announce the touch, re-score."""
    filled = False
    for name in PROFILE_FIELDS:
        if data.get(name) and not getattr(lead, name):
            setattr(lead, name, data[name])
            filled = True
    if filled:
        apply_score(plugins, lead)
    lead.touch_count += 1
    lead.version += 1
    touch = LeadTouch(id=uuid.uuid4(), lead_id=lead.id, source=data.get("source"), campaign=data.get("campaign"),
                      created_at=utcnow())
    uow.session.add(touch)
    # The contacts timeline shows every touch of the person's lead, also the ones before it converted.
    uow.add_event("crm.lead.touched", {"lead_id": lead.id, "touch_id": touch.id, "source": touch.source,
                                       "campaign": touch.campaign, "occurred_at": touch.created_at}, subject=lead.id)


def capture_lead(uow: UnitOfWork, data: dict, *, plugins) -> tuple[Lead, bool]:
    """Create a scored lead, or record a touch on the open lead with the same e-mail; returns (lead, created)."""
    email_normalized = normalize_email(data["email"])
    with uow:
        session = uow.session
        existing = _open_lead(session, email_normalized)
        if existing is None:
            lead = Lead(id=uuid.uuid4(), email=data["email"].strip(), email_normalized=email_normalized,
                        **{k: data.get(k) for k in PROFILE_FIELDS + ("source", "campaign")})
            apply_score(plugins, lead)
            touch = LeadTouch(lead_id=lead.id, source=lead.source, campaign=lead.campaign)
            # Another request may have captured the same person a moment ago: that lead wins.
            existing = insert_or_reread(session, lead, touch, reread=lambda: _open_lead(session, email_normalized))
            if existing is None:
                uow.add_event("crm.lead.created", {"lead_id": lead.id, "email": lead.email, "source": lead.source,
                                                   "score": lead.score}, subject=lead.id)
                uow.commit()
                return lead, True
        _record_touch(uow, existing, data, plugins)
        uow.commit()
        return existing, False


# One round trip: the lead LEFT JOINed to its latest touches (a lead without touches is one row). Built once,
# as constructing it per call costs more CPU than running it.
_LATEST_TOUCHES = (select(LeadTouch.seq).where(LeadTouch.lead_id == bindparam("lead_id"))
                   .order_by(LeadTouch.seq.desc()).limit(TOUCHES_SHOWN))
_LEAD_WITH_TOUCHES = (select(Lead, LeadTouch)
                      .outerjoin(LeadTouch, and_(LeadTouch.lead_id == Lead.id, LeadTouch.seq.in_(_LATEST_TOUCHES)))
                      .where(Lead.id == bindparam("lead_id")).order_by(LeadTouch.seq.desc()))


def get_lead(uow: UnitOfWork, lead_id: uuid.UUID) -> dict:
    """A lead with its score factors and latest touches."""
    with uow:
        rows = uow.session.execute(_LEAD_WITH_TOUCHES, {"lead_id": lead_id}).all()
        if not rows:
            raise NotFound(f"No lead with id {lead_id}.")
        lead = rows[0][0]
        touches = [touch for _lead, touch in rows if touch is not None]
        return {**{c.key: getattr(lead, c.key) for c in Lead.__table__.columns}, "touches": touches}


def list_leads(uow: UnitOfWork, *, status=None, source=None, min_score=None, limit: int, cursor: str | None,
               sort: str | None = None) -> dict:
    """Leads newest first or by `sort`, filtered, one cursor page at a time."""
    stmt = select(Lead)
    if status:
        stmt = stmt.where(Lead.status == status)
    if source:
        stmt = stmt.where(Lead.source == source)
    if min_score is not None:
        stmt = stmt.where(Lead.score >= min_score)
    with uow:
        return paginate(uow.session, stmt, Lead.seq, limit=limit, cursor=cursor, sort=sort, columns=LEAD_SORTS)


_TRANSITIONS = {
    "new": {"contacted", "qualified", "disqualified"},
    "contacted": {"qualified", "disqualified", "new"},
    "qualified": {"contacted", "disqualified"},
    "disqualified": {"new"},
}


def update_lead(uow: UnitOfWork, lead_id: uuid.UUID, changes: dict, *, plugins) -> Lead:
    """Change a lead's profile or move it along the pipeline (converted leads are closed)."""
    with uow:
        lead = _get(uow.session, lead_id)
        status = changes.pop("status", None)
        if status and status != lead.status:
            if status not in _TRANSITIONS.get(lead.status, set()):
                raise Conflict(f"A {lead.status} lead cannot move to {status}.", current_status=lead.status)
            if status in OPEN_STATUSES and lead.status not in OPEN_STATUSES:
                other = _open_lead(uow.session, lead.email_normalized)
                if other is not None:
                    raise Conflict(f"Lead {other.id} is already open for this e-mail.", open_lead_id=str(other.id)
                                   ).for_readers(READ_SCOPE, otherwise="Another lead is already open for this e-mail.")
            lead.status = status
        if lead.status in ("converting", "converted") and changes:
            raise Conflict("A converted lead is closed; change the contact instead.", current_status=lead.status)
        profile_changed = False
        for name, value in changes.items():
            if getattr(lead, name) != value:
                setattr(lead, name, value)
                profile_changed = True
        if profile_changed:
            apply_score(plugins, lead)
        lead.version += 1
        uow.commit()
        return lead


def convert_lead(uow: UnitOfWork, lead_id: uuid.UUID) -> Lead:
    """Ask for the lead to become a contact; converting again returns the same lead and emits nothing."""
    with uow:
        session = uow.session
        # A conditional update is the race-free claim on every database: only one caller moves the
        # lead out of an open status, so only one crm.lead.converted is ever recorded. RETURNING hands back
        # the claimed row in the same round trip (PostgreSQL, SQLite >= 3.35).
        lead = session.scalars(
            update(Lead).where(Lead.id == lead_id, Lead.status.in_(OPEN_STATUSES))
            .values(status="converting", conversion_requested_at=utcnow(), version=Lead.version + 1)
            .returning(Lead)
            .execution_options(synchronize_session=False, populate_existing=True)
        ).one_or_none()
        if lead is None:
            lead = _get(session, lead_id)
            if lead.status == "disqualified":
                raise Conflict("A disqualified lead cannot be converted; reopen it first.", current_status=lead.status)
            return lead
        uow.add_event("crm.lead.converted", {
            "lead_id": lead.id, "email": lead.email, "first_name": lead.first_name, "last_name": lead.last_name,
            "company": lead.company, "job_title": lead.job_title, "phone": lead.phone, "source": lead.source,
            "score": lead.score,
        }, subject=lead.id)
        uow.commit()
        return lead


def link_contact(uow: UnitOfWork, lead_id: uuid.UUID, contact_id: uuid.UUID) -> Lead | None:
    """Record the contact a converted lead became; unknown leads are ignored."""
    [lead] = link_contacts(uow, [(lead_id, contact_id)])
    return lead


def link_contacts(uow: UnitOfWork, links: list[tuple[uuid.UUID, uuid.UUID]]) -> list[Lead | None]:
    """link_contact for many (lead id, contact id) pairs, in order, with one read of their leads."""
    with uow:
        stmt = select(Lead).where(Lead.id.in_({lead_id for lead_id, _contact_id in links}))
        leads = {lead.id: lead for lead in uow.session.scalars(stmt)}
        for lead_id, contact_id in links:
            lead = leads.get(lead_id)
            if lead is None or (lead.status == "converted" and lead.contact_id == contact_id):
                continue
            lead.contact_id = contact_id
            lead.status = "converted"
            lead.converted_at = lead.converted_at or utcnow()
            lead.version += 1
        uow.commit()
        return [leads.get(lead_id) for lead_id, _contact_id in links]
