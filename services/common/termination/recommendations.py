"""Recommendations: what an evaluation of the enabled policies leaves for an operator, and the rules that keep
them few.

For each flagged subject (fingerprint = sha256 of its sorted (plugin, code, strategy) findings):
- no open recommendation: a new one (open) and crm.termination.recommended;
- an open one with the same fingerprint: left open, its findings and evidence refreshed (no event);
- an open one with another fingerprint: it is superseded by a new open one (and the event);
- a recommendation with the same fingerprint dismissed within CRM_TERMINATION_DISMISSAL_DAYS: not recommended
  again (an open one with another fingerprint is then left as it is).
A full scheduled evaluation then withdraws the open recommendations of subjects it no longer flagged (runs.py).
At most one open recommendation per subject (a partial unique index settles two evaluations racing).
"""
from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from crm_plugins.types import TerminationEvaluation
from sqlalchemy import select

from services.common.catalog import Event
from services.common.consumer import event_cause
from services.common.db import utcnow
from services.common.pagination import paginate
from services.common.problems import NotFound
from services.common.uow import UnitOfWork

from .adapter import TerminationKit, subject_ids_of
from .models import DISMISSED, OPEN, SUPERSEDED
from .policies import enabled_snapshots, plugin_policies

TERMINATED = "terminated"
RECOMMENDED, REFRESHED, SUPERSEDED_COUNT, SUPPRESSED = "recommended", "refreshed", "superseded", "suppressed"


def fingerprint(findings: Iterable[Mapping]) -> str:
    """What makes two recommendations the same: the sorted (plugin, code, strategy) of their findings."""
    keys = sorted({(f["plugin"], f["code"], f["strategy"]) for f in findings})
    return hashlib.sha256("\n".join("\t".join(key) for key in keys).encode()).hexdigest()


def findings_json(evaluation: TerminationEvaluation) -> list[dict]:
    """An evaluation's findings as stored (evidence Decimals as strings)."""
    return [finding.to_dict() for finding in evaluation.findings]


def apply_evaluations(uow: UnitOfWork, kit: TerminationKit, flagged: Mapping[uuid.UUID, TerminationEvaluation], *,
                      dismissal_days: int, run_id: uuid.UUID | None = None,
                      cause: Event | None = None) -> dict[str, int]:
    """Turn flagged subjects' evaluations into recommendations by the rules above, in the caller's transaction;
    returns how many were recommended, refreshed, superseded and suppressed (dismissed recently)."""
    counts = {RECOMMENDED: 0, REFRESHED: 0, SUPERSEDED_COUNT: 0, SUPPRESSED: 0}
    if not flagged:
        return counts
    Rec, session, now = kit.models.Recommendation, uow.session, utcnow()
    ids = list(flagged)
    # Locked in subject order: two evaluations of overlapping subjects (a batch and an event) wait, not deadlock.
    open_recs = {rec.subject_id: rec for rec in session.scalars(
        select(Rec).where(Rec.subject_id.in_(ids), Rec.status == OPEN).order_by(Rec.subject_id)
        .with_for_update().execution_options(populate_existing=True))}
    since = now - timedelta(days=dismissal_days)
    dismissed = set(session.execute(select(Rec.subject_id, Rec.fingerprint).where(
        Rec.subject_id.in_(ids), Rec.status == DISMISSED, Rec.closed_at >= since)).all())
    for subject_id in sorted(ids):
        evaluation = flagged[subject_id]
        findings = findings_json(evaluation)
        mark = fingerprint(findings)
        current = open_recs.get(subject_id)
        if current is not None and current.fingerprint == mark:
            current.findings, current.severity, current.strategy = findings, evaluation.severity, evaluation.strategy
            current.evidence_at = now
            counts[REFRESHED] += 1
            continue
        if (subject_id, mark) in dismissed:
            counts[SUPPRESSED] += 1
            continue
        new = Rec(id=uuid.uuid4(), subject_id=subject_id, status=OPEN, severity=evaluation.severity,
                  strategy=evaluation.strategy, findings=findings, fingerprint=mark, run_id=run_id,
                  created_at=now, evidence_at=now)
        if current is not None:
            current.status, current.closed_at, current.superseded_by = SUPERSEDED, now, new.id
            session.flush()  # the old one leaves the one-open index before the new one enters it
            counts[SUPERSEDED_COUNT] += 1
        session.add(new)
        _recommended_event(uow, kit, new, now, cause)
        counts[RECOMMENDED] += 1
    session.flush()
    return counts


def _recommended_event(uow: UnitOfWork, kit: TerminationKit, rec, now: datetime, cause: Event | None) -> None:
    uow.add_event("crm.termination.recommended", {
        "recommendation_id": rec.id, "subject_kind": kit.kind, "subject_id": rec.subject_id,
        "severity": rec.severity, "strategy": rec.strategy,
        "findings": [{key: f[key] for key in ("plugin", "code", "severity", "strategy")} for f in rec.findings],
        "occurred_at": now,
    }, subject=rec.subject_id, **(event_cause(cause) if cause is not None else {}))


def evaluate_subjects(uow: UnitOfWork, kit: TerminationKit, plugins, settings, subject_ids: Sequence[uuid.UUID], *,
                      cause: Event | None = None) -> dict[str, int] | None:
    """Evaluate the enabled policies on these subjects now, in the caller's transaction (an evidence event's
    handler); None when no policy is enabled."""
    if not subject_ids:
        return None
    session = uow.session
    # Read in the batch's own transaction, not cached: a policy another process enabled judges the next batch.
    # A cache would need every process told on commit (LISTEN/NOTIFY arrives after it, never inside an open
    # transaction, and not on SQLite) to save one query of a tiny table (docs/termination.md).
    snapshots = enabled_snapshots(session, kit)
    if not snapshots:
        return None
    policies = plugin_policies(snapshots)
    histories = kit.adapter.histories(session, list(subject_ids), utcnow(), settings.termination_window_days)
    flagged = {}
    for subject_id, (subject, history) in histories.items():
        if subject.status == TERMINATED:
            continue  # the relationship has ended: nothing left to recommend
        evaluation = plugins.evaluate_termination(subject, history, policies)
        if evaluation.flagged:
            flagged[subject_id] = evaluation
    return apply_evaluations(uow, kit, flagged, dismissal_days=settings.termination_dismissal_days, cause=cause)


def evaluate_events(uow: UnitOfWork, kit: TerminationKit, plugins, settings, events: Sequence[Event]) -> None:
    """A consumer batch's evidence events: evaluate the subjects they concern (the first event names the cause
    of the recommendations recorded)."""
    ids = subject_ids_of(kit.adapter, events)
    if ids:
        evaluate_subjects(uow, kit, plugins, settings, ids, cause=events[0])


def get_recommendation(uow: UnitOfWork, kit: TerminationKit, recommendation_id: uuid.UUID):
    """One recommendation with its findings and evidence (404 problem when there is none)."""
    Rec = kit.models.Recommendation
    with uow:
        rec = uow.session.scalar(select(Rec).where(Rec.id == recommendation_id))
    if rec is None:
        raise NotFound(f"No termination recommendation with id {recommendation_id}.")
    return rec


def list_recommendations(uow: UnitOfWork, kit: TerminationKit, *, limit: int, cursor: str | None,
                         status: str | None = None, subject_id: uuid.UUID | None = None,
                         strategy: str | None = None) -> dict:
    """Recommendations, newest first, filtered by status, subject and strategy."""
    Rec = kit.models.Recommendation
    stmt = select(Rec)
    if status:
        stmt = stmt.where(Rec.status == status)
    if subject_id:
        stmt = stmt.where(Rec.subject_id == subject_id)
    if strategy:
        stmt = stmt.where(Rec.strategy == strategy)
    with uow:
        return paginate(uow.session, stmt, Rec.seq, limit=limit, cursor=cursor)
