"""Decisions: an operator (termination:decide) accepts or dismisses an open recommendation, with a reason.

Accepting a `terminate` recommendation ends the relationship through the adapter in the same transaction (the
contact is marked terminated, the partner terminated and its portal closed), recording its own event. Any other
strategy accepted is recorded with the effect "none": the operator carries it out (raise the price, re-specify,
unbundle, retain). The decision keeps who decided, why, the strategy and the findings with their evidence as
they were; crm.termination.decided is published with it.
"""
from __future__ import annotations

import uuid

from sqlalchemy import select

from services.common.db import utcnow
from services.common.pagination import paginate
from services.common.problems import Conflict, NotFound
from services.common.uow import UnitOfWork

from .adapter import TerminationKit
from .models import ACCEPT, ACCEPTED, DISMISSED, OPEN

NO_EFFECT = "none"
TERMINATE = "terminate"


def decide(uow: UnitOfWork, kit: TerminationKit, recommendation_id: uuid.UUID, *, decision: str, reason: str,
           decided_by: str):
    """Accept or dismiss an open recommendation; 404 when there is none, 409 naming its status when not open."""
    m = kit.models
    with uow:
        session = uow.session
        rec = session.scalar(select(m.Recommendation).where(m.Recommendation.id == recommendation_id)
                             .with_for_update().execution_options(populate_existing=True))
        if rec is None:
            raise NotFound(f"No termination recommendation with id {recommendation_id}.")
        if rec.status != OPEN:
            raise Conflict(f"The recommendation is {rec.status}, not open: only an open one is decided.",
                           recommendation_status=rec.status)
        now, decision_id = utcnow(), uuid.uuid4()
        effect = NO_EFFECT
        if decision == ACCEPT and rec.strategy == TERMINATE:
            effect = kit.adapter.terminate(uow, rec.subject_id, recommendation_id=rec.id, decision_id=decision_id,
                                           reason=reason)
        record = m.Decision(id=decision_id, recommendation_id=rec.id, subject_id=rec.subject_id, decision=decision,
                            reason=reason, severity=rec.severity, strategy=rec.strategy, findings=rec.findings,
                            effect=effect, decided_by=decided_by, decided_at=now)
        session.add(record)
        rec.status, rec.closed_at = (ACCEPTED if decision == ACCEPT else DISMISSED), now
        uow.add_event("crm.termination.decided", {
            "recommendation_id": rec.id, "decision_id": decision_id, "subject_kind": kit.kind,
            "subject_id": rec.subject_id, "decision": rec.status, "strategy": rec.strategy, "occurred_at": now,
        }, subject=rec.subject_id)
        uow.commit()
        return record


def list_decisions(uow: UnitOfWork, kit: TerminationKit, *, limit: int, cursor: str | None,
                   subject_id: uuid.UUID | None = None) -> dict:
    """Decisions, newest first, optionally about one subject."""
    Decision = kit.models.Decision
    stmt = select(Decision)
    if subject_id:
        stmt = stmt.where(Decision.subject_id == subject_id)
    with uow:
        return paginate(uow.session, stmt, Decision.seq, limit=limit, cursor=cursor)
