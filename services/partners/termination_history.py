"""The partners side of termination policies: which partners are judged, the history each is judged on, and
terminating one when an operator accepts a `terminate` recommendation.

These are the functions of the partners' `SubjectAdapter` (services/common/termination). A history is built for
a batch of partners at once: one query for the partners, one for every scorecard figure (scorecards.py's own
query, so the figures equal a scorecard's over the same days) and one for the disputes by category — never one
query per partner.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta, timezone

from crm_plugins.types import DisputeCount, PartnerTerminationHistory, TerminationSubject
from sqlalchemy import func, or_, select, update

from services.common.catalog import Event
from services.common.db import utcnow
from services.common.problems import NotFound
from services.common.uow import UnitOfWork

from . import rules, scorecards
from .models import DISPUTE_CATEGORIES, Dispute, Partner

TERMINATED = "terminated"
RESOLVED = "resolved"
PARTNER_TERMINATED = "partner_terminated"
PARTNER_ALREADY_TERMINATED = "partner_already_terminated"


def _instant(day: date) -> datetime:
    return datetime.combine(day, time.min, timezone.utc)


def eligible_partners(session, after_seq: int | None, limit: int) -> list[tuple[int, uuid.UUID]]:
    """Up to `limit` partners after `after_seq` that are not terminated, as (seq, id) in seq order.

    Every other status is judged, prospects included: a prospect with no deliveries or disputes simply has
    an empty history, which no built-in policy flags.
    """
    stmt = select(Partner.seq, Partner.id).where(Partner.status.not_in(rules.FINAL_STATUSES))
    if after_seq is not None:
        stmt = stmt.where(Partner.seq > after_seq)
    return [(seq, partner_id) for seq, partner_id in session.execute(stmt.order_by(Partner.seq).limit(limit))]


def _dispute_counts(session, partner_ids: Sequence[uuid.UUID], since: date,
                    until: date) -> dict[uuid.UUID, tuple[DisputeCount, ...]]:
    """Per partner and category: the disputes opened from `since` to `until` (UTC days, both included) and the
    ones opened up to `until` that are not resolved now. Every known category is listed, with zeros."""
    window_start, window_end = _instant(since), _instant(until + timedelta(days=1))
    opened_in_window = Dispute.opened_at >= window_start
    unresolved = Dispute.status != RESOLVED
    stmt = (select(Dispute.partner_id, Dispute.category,
                   func.count().filter(opened_in_window).label("opened"),
                   func.count().filter(unresolved).label("unresolved"))
            .where(Dispute.partner_id.in_(partner_ids), Dispute.opened_at < window_end,
                   or_(opened_in_window, unresolved))
            .group_by(Dispute.partner_id, Dispute.category))
    known = set(DISPUTE_CATEGORIES)
    found: dict[uuid.UUID, dict[str, DisputeCount]] = {partner_id: {} for partner_id in partner_ids}
    for partner_id, category, opened, open_now in session.execute(stmt):
        found[partner_id][category] = DisputeCount(category=category, opened=opened, unresolved=open_now)
    # The known categories in their order, then any other a row holds (a category added since), by name.
    return {partner_id: tuple(by_category.get(category) or DisputeCount(category=category)
                              for category in (*DISPUTE_CATEGORIES, *sorted(set(by_category) - known)))
            for partner_id, by_category in found.items()}


def partner_histories(session, ids: Sequence[uuid.UUID], as_of: datetime,
                      window_days: int) -> dict[uuid.UUID, tuple[TerminationSubject, PartnerTerminationHistory]]:
    """The subject and history of each partner of `ids` that exists, over the `window_days` days before `as_of`.

    The window runs from `as_of.date() - window_days` to `as_of.date()` (UTC days, both included). Its
    scorecard measures the deliveries promised in it and the disputes opened in it exactly as a scorecard
    period does; `disputes` counts, per category, the disputes opened in the window and those still unresolved.
    Three queries however many partners are asked for.
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    if window_days < 0:
        raise ValueError("window_days must be 0 or more")
    until = as_of.astimezone(timezone.utc).date()
    since = until - timedelta(days=window_days)
    partners = session.execute(select(Partner.id, Partner.name, Partner.status)
                               .where(Partner.id.in_(list(ids)))).all() if ids else []
    found = [partner_id for partner_id, _name, _status in partners]
    metrics = scorecards.range_metrics(session, found, since, until)
    disputes = _dispute_counts(session, found, since, until) if found else {}
    return {
        partner_id: (TerminationSubject(kind="partner", id=str(partner_id), name=name, status=status),
                     PartnerTerminationHistory(as_of=until, since=since, scorecard=metrics[partner_id],
                                               disputes=disputes[partner_id]))
        for partner_id, name, status in partners
    }


def terminate_partner(uow: UnitOfWork, partner_id: uuid.UUID, *, recommendation_id: uuid.UUID,
                      decision_id: uuid.UUID, reason: str) -> str:
    """Terminate a partner on an accepted recommendation and record crm.partner.terminated.

    Returns "partner_terminated", or "partner_already_terminated" (no change, no event) when it already was;
    404 when there is no such partner. Joins the caller's unit of work (the decision is recorded with it).
    Its portal closes with the commit: portal_access.py refuses a terminated partner's every request.
    """
    with uow:
        session = uow.session
        status = session.scalar(select(Partner.status).where(Partner.id == partner_id))
        if status is None:
            raise NotFound(f"No partner with id {partner_id}.")
        rules.check_transition(status, TERMINATED)
        # The conditional update is the claim: of two decisions terminating the same partner at once, one
        # changes the row and records the event; the other matches nothing and reports it already terminated.
        claimed = session.execute(
            update(Partner).where(Partner.id == partner_id, Partner.status.not_in(rules.FINAL_STATUSES))
            .values(status=TERMINATED, version=Partner.version + 1, updated_at=utcnow())
            .execution_options(synchronize_session="fetch")
        ).rowcount
        if not claimed:
            return PARTNER_ALREADY_TERMINATED
        uow.add_event("crm.partner.terminated", {
            "partner_id": partner_id, "recommendation_id": recommendation_id, "decision_id": decision_id,
            "reason": reason, "occurred_at": utcnow(),
        }, subject=partner_id)
        uow.commit()
        return PARTNER_TERMINATED


def _partner_of(event: Event) -> uuid.UUID | None:
    partner_id = (event.data or {}).get("partner_id")
    return None if partner_id is None else uuid.UUID(str(partner_id))


# The partners' own events that bring new evidence: each names the partner whose history it changes.
EVIDENCE_EVENTS: dict[str, Callable[[Event], uuid.UUID | None]] = {
    "crm.delivery.recorded": _partner_of,
    "crm.dispute.opened": _partner_of,
    "crm.dispute.updated": _partner_of,
}
