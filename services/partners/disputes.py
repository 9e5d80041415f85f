"""Disputes between us and a partner: a claim about a contract, a delivery or an invoice, and its thread.

Either side opens one (an internal app, or the partner through its portal); both sides write messages. Only
internal users move a dispute along open → investigating → resolved or escalated (escalated → resolved), and
a partner may escalate its own. Resolved is final and needs a resolution. Every move names the version it
moves (If-Match) and is claimed with a conditional UPDATE, so of two concurrent moves one wins, the other 412.

The SLA: a dispute unresolved longer than CRM_PARTNERS_DISPUTE_SLA_HOURS is overdue. Reads compute `overdue`
from the clock; the worker's SLA job (dispute_jobs.py) records crm.dispute.overdue once per dispute, setting
`overdue_at` in the same transaction.

Portal callers pass their own partner id as `partner_id`: another partner's dispute is not found, exactly
like a missing one, and another partner's contract or delivery is refused like an unknown one.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select, update

from services.common.db import new_id, utcnow
from services.common.etags import Precondition
from services.common.pagination import paginate
from services.common.problems import Conflict, NotFound, PreconditionFailed, Unprocessable
from services.common.uow import UnitOfWork

from .models import DISPUTE_SORTS, Contract, Delivery, Dispute, DisputeMessage, Partner

INTERNAL, PARTNER = "internal", "partner"
RESOLVED = "resolved"
ESCALATED = "escalated"
# Where each status may move; resolved is final.
TRANSITIONS: Mapping[str, frozenset[str]] = {
    "open": frozenset({"investigating", ESCALATED}),
    "investigating": frozenset({RESOLVED, ESCALATED}),
    ESCALATED: frozenset({RESOLVED}),
    RESOLVED: frozenset(),
}
# The moves a partner may make on its own disputes; every other move is for internal users.
PARTNER_MOVES = frozenset({ESCALATED})
# What a dispute may be about: the request field, and the table that says whose it is.
SUBJECTS = {"contract_id": (Contract.id, Contract.partner_id), "delivery_id": (Delivery.id, Delivery.partner_id)}
_SUBJECT_NAMES = {"contract_id": "contract", "delivery_id": "delivery"}
_CENTS = Decimal("0.01")
# The thread reads oldest first: a conversation.
_THREAD_ORDER = {"created_at": DisputeMessage.created_at}


# -- pure rules -------------------------------------------------------------------------------------------

def sla_cutoff(now: datetime, sla_hours: float) -> datetime:
    """Disputes opened at or before this moment are past their SLA."""
    return now - timedelta(hours=sla_hours)


def is_overdue(dispute: Dispute, now: datetime, sla_hours: float) -> bool:
    """Unresolved and opened longer ago than the SLA allows."""
    return dispute.status != RESOLVED and dispute.opened_at <= sla_cutoff(now, sla_hours)


def move_problems(current: str, target: str, resolution: str | None, side: str) -> None:
    """Raise why `side` may not move a dispute from `current` to `target` (409) or why its resolution is wrong (422)."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (resolved is final)"
        raise Conflict(f"The dispute is {current}; it cannot move to {target}. Allowed: {allowed}.",
                       current_status=current)
    if side == PARTNER and target not in PARTNER_MOVES:
        raise Conflict(f"The dispute is {current}; a partner may only escalate it.", current_status=current)
    if target == RESOLVED and resolution is None:
        raise Unprocessable("Resolving a dispute needs a resolution.",
                            errors={"resolution": ["Required when the status is resolved."]})
    if target != RESOLVED and resolution is not None:
        raise Unprocessable("Only a resolved dispute has a resolution.",
                            errors={"resolution": ["Send it only with the status resolved."]})


# -- reading ----------------------------------------------------------------------------------------------

def shown(dispute: Dispute, now: datetime, sla_hours: float) -> dict:
    """The dispute's columns and whether it is overdue now."""
    return {**{c.key: getattr(dispute, c.key) for c in Dispute.__table__.columns},
            "overdue": is_overdue(dispute, now, sla_hours)}


def _event_data(dispute: Dispute, occurred_at: datetime) -> dict:
    return {"dispute_id": dispute.id, "partner_id": dispute.partner_id, "category": dispute.category,
            "status": dispute.status, "opened_by": dispute.opened_by, "amount": dispute.amount,
            "currency": dispute.currency, "contract_id": dispute.contract_id, "delivery_id": dispute.delivery_id,
            "resolution": dispute.resolution, "occurred_at": occurred_at}


def _owner(partner_id) -> uuid.UUID:
    # Never "any partner": a caller without a valid partner id finds nothing.
    if not isinstance(partner_id, uuid.UUID):
        raise NotFound("No partner is bound to this key.")
    return partner_id


def _partner(session, partner_id: uuid.UUID) -> Partner:
    partner = session.scalar(select(Partner).where(Partner.id == partner_id))
    if partner is None:
        raise NotFound(f"No partner with id {partner_id}.")
    return partner


def _dispute(session, partner_id: uuid.UUID, dispute_id: uuid.UUID) -> Dispute:
    dispute = session.scalar(select(Dispute).where(Dispute.id == dispute_id, Dispute.partner_id == partner_id))
    if dispute is None:
        # One answer for "does not exist" and "is another partner's".
        raise NotFound(f"No dispute with id {dispute_id}.")
    return dispute


def _check_subjects(session, partner_id: uuid.UUID, data: Mapping) -> None:
    """422 naming each contract or delivery that is not this partner's (unknown and another's read alike)."""
    errors = {}
    for name, (key, owner_column) in SUBJECTS.items():
        if data.get(name) is None:
            continue
        owner = session.scalar(select(owner_column).where(key == data[name]))
        if owner != partner_id:
            errors[name] = [f"No {_SUBJECT_NAMES[name]} of this partner has this id."]
    if errors:
        raise Unprocessable("The dispute names something that is not this partner's.", errors=errors)


# -- use cases --------------------------------------------------------------------------------------------

def open_dispute(uow: UnitOfWork, partner_id: uuid.UUID, data: Mapping, *, side: str, actor: str | None,
                 sla_hours: float) -> dict:
    """Open a dispute with its first message and record crm.dispute.opened."""
    if side == PARTNER:
        partner_id = _owner(partner_id)
    if not any(data.get(name) for name in ("contract_id", "delivery_id", "invoice_reference")):
        message = "Say what the dispute is about: a contract_id, a delivery_id or an invoice_reference."
        raise Unprocessable(message, errors={name: [message] for name in ("contract_id", "delivery_id",
                                                                          "invoice_reference")})
    now = utcnow()
    with uow:
        session = uow.session
        _partner(session, partner_id)
        _check_subjects(session, partner_id, data)
        dispute = Dispute(id=new_id(), partner_id=partner_id, contract_id=data.get("contract_id"),
                          delivery_id=data.get("delivery_id"), invoice_reference=data.get("invoice_reference"),
                          category=data["category"], amount=Decimal(data["amount"]).quantize(_CENTS),
                          currency=data["currency"], status="open", opened_by=side, opened_by_key=actor,
                          opened_at=now, updated_at=now, version=1)
        session.add(dispute)
        session.flush()
        session.add(DisputeMessage(id=new_id(), dispute_id=dispute.id, side=side, author_key=actor,
                                   body=data["message"], created_at=now))
        uow.add_event("crm.dispute.opened", _event_data(dispute, now), subject=dispute.id)
        uow.commit()
        return shown(dispute, now, sla_hours)


def get_dispute(uow: UnitOfWork, partner_id: uuid.UUID, dispute_id: uuid.UUID, *, sla_hours: float) -> dict:
    """One dispute of the partner, with whether it is overdue."""
    with uow:
        return shown(_dispute(uow.session, _owner(partner_id), dispute_id), utcnow(), sla_hours)


def list_disputes(uow: UnitOfWork, partner_id: uuid.UUID, *, sla_hours: float, limit: int, cursor: str | None,
                  status: str | None = None, overdue: bool | None = None, sort: str | None = None) -> dict:
    """The partner's disputes, newest first or by `sort`, optionally of one status or only (not) overdue ones."""
    partner_id = _owner(partner_id)
    now = utcnow()
    stmt = select(Dispute).where(Dispute.partner_id == partner_id)
    if status:
        stmt = stmt.where(Dispute.status == status)
    if overdue is not None:
        late = (Dispute.status != RESOLVED) & (Dispute.opened_at <= sla_cutoff(now, sla_hours))
        stmt = stmt.where(late if overdue else ~late)
    with uow:
        page = paginate(uow.session, stmt, Dispute.seq, limit=limit, cursor=cursor, sort=sort, columns=DISPUTE_SORTS)
        if not page["items"]:
            _partner(uow.session, partner_id)  # only an empty page needs "no such partner" told apart
        return {**page, "items": [shown(d, now, sla_hours) for d in page["items"]]}


def move_dispute(uow: UnitOfWork, partner_id: uuid.UUID, dispute_id: uuid.UUID, *, status: str,
                 resolution: str | None = None, side: str, precondition: Precondition, sla_hours: float,
                 required: bool = True) -> dict:
    """Move a dispute to `status` (a resolution with resolved) and record crm.dispute.updated.

    The caller names the version it moves (If-Match; `required` for internal users): stale is 412.
    """
    partner_id = _owner(partner_id)
    with uow:
        session = uow.session
        dispute = _dispute(session, partner_id, dispute_id)
        current = dispute.version
        precondition.check(current, required=required, what="the dispute")
        move_problems(dispute.status, status, resolution, side)
        now = utcnow()
        # The conditional update is the race-free claim: of two moves from the same version one matches no row.
        claimed = session.execute(
            update(Dispute).where(Dispute.id == dispute.id, Dispute.version == current)
            .values(status=status, resolution=resolution, resolved_at=now if status == RESOLVED else None,
                    updated_at=now, version=current + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not claimed:
            raise PreconditionFailed("The dispute changed meanwhile; fetch it again.")
        session.refresh(dispute)
        uow.add_event("crm.dispute.updated", _event_data(dispute, now), subject=dispute.id)
        uow.commit()
        return shown(dispute, now, sla_hours)


def post_message(uow: UnitOfWork, partner_id: uuid.UUID, dispute_id: uuid.UUID, body: str, *, side: str,
                 actor: str | None) -> DisputeMessage:
    """Add a message to a dispute's thread; a resolved dispute takes no more (409)."""
    partner_id = _owner(partner_id)
    with uow:
        session = uow.session
        dispute = _dispute(session, partner_id, dispute_id)
        if dispute.status == RESOLVED:
            raise Conflict("The dispute is resolved; its thread is closed.", current_status=dispute.status)
        message = DisputeMessage(id=new_id(), dispute_id=dispute.id, side=side, author_key=actor, body=body,
                                 created_at=utcnow())
        session.add(message)
        uow.commit()
        return message


def list_messages(uow: UnitOfWork, partner_id: uuid.UUID, dispute_id: uuid.UUID, *, limit: int,
                  cursor: str | None) -> dict:
    """A dispute's thread, oldest first, in cursor pages."""
    partner_id = _owner(partner_id)
    with uow:
        _dispute(uow.session, partner_id, dispute_id)
        stmt = select(DisputeMessage).where(DisputeMessage.dispute_id == dispute_id)
        return paginate(uow.session, stmt, DisputeMessage.seq, limit=limit, cursor=cursor, sort="created_at",
                        columns=_THREAD_ORDER)


# -- the SLA ----------------------------------------------------------------------------------------------

def mark_overdue(uow: UnitOfWork, *, sla_hours: float, now: datetime | None = None, batch: int = 100) -> int:
    """Record crm.dispute.overdue for up to `batch` disputes past their SLA; returns how many.

    `overdue_at` is set in the transaction that records the event, so each dispute's event is recorded once.
    With two workers, `FOR UPDATE SKIP LOCKED` gives each a different set of rows, and a row another worker
    marked meanwhile fails the `overdue_at IS NULL` recheck PostgreSQL makes when it locks the row.
    """
    now = now or utcnow()
    stmt = (select(Dispute)
            .where(Dispute.overdue_at.is_(None), Dispute.status != RESOLVED,
                   Dispute.opened_at <= sla_cutoff(now, sla_hours))
            .order_by(Dispute.opened_at).limit(batch).with_for_update(skip_locked=True))
    with uow:
        session = uow.session
        due = list(session.scalars(stmt))
        if not due:
            return 0
        # updated_at stays: passing the SLA is not a change anyone made.
        session.execute(update(Dispute).where(Dispute.id.in_([d.id for d in due]))
                        .values(overdue_at=now, updated_at=Dispute.updated_at)
                        .execution_options(synchronize_session=False))
        for dispute in due:
            uow.add_event("crm.dispute.overdue", _event_data(dispute, now), subject=dispute.id)
        uow.commit()
        return len(due)
