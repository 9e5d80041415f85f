"""The termination tables, defined on a service's own declarative base (contacts and partners each own a copy).

`termination_models(Base)` declares them, like `messaging_models` declares the outbox and inbox; the service's
models.py keeps the returned classes. The migration both services run (migration.py) creates the same schema.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text, UniqueConstraint, text, types
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import JsonDocument, SeqType, new_id, utcnow

# Policies
CODE_MAX, NAME_MAX, DESCRIPTION_MAX, PLUGIN_MAX = 64, 200, 2000, 200
# Runs
SIMULATION, EVALUATION = "simulation", "evaluation"
MODES = (SIMULATION, EVALUATION)
PENDING, RUNNING, COMPLETED, FAILED = "pending", "running", "completed", "failed"
RUN_STATUSES = (PENDING, RUNNING, COMPLETED, FAILED)
# Recommendations
OPEN, ACCEPTED, DISMISSED, WITHDRAWN, SUPERSEDED = "open", "accepted", "dismissed", "withdrawn", "superseded"
RECOMMENDATION_STATUSES = (OPEN, ACCEPTED, DISMISSED, WITHDRAWN, SUPERSEDED)
# Decisions
ACCEPT, DISMISS = "accept", "dismiss"
REASON_MAX = 1000

OPEN_SQL = "status = 'open'"


@dataclass(frozen=True)
class TerminationModels:
    """The termination models of one service."""

    Policy: type
    Run: type
    RunSubject: type
    RunFinding: type
    Recommendation: type
    Decision: type


def termination_models(Base) -> TerminationModels:
    """Declare the termination tables on `Base`; returns their models."""

    class TerminationPolicy(Base):
        """A policy record: a code a plugin implements, its parameters, enabled or not. `version` counts changes."""

        __tablename__ = "termination_policies"
        seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
        id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
        code: Mapped[str] = mapped_column(String(CODE_MAX), unique=True)
        plugin: Mapped[str] = mapped_column(String(PLUGIN_MAX))
        name: Mapped[str] = mapped_column(String(NAME_MAX))
        description: Mapped[str | None] = mapped_column(String(DESCRIPTION_MAX), default=None)
        enabled: Mapped[bool] = mapped_column(Boolean, default=False)
        parameters: Mapped[dict] = mapped_column(JsonDocument, default=dict)
        version: Mapped[int] = mapped_column(Integer, default=1)
        created_at: Mapped[datetime] = mapped_column(default=utcnow)
        updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    class TerminationRun(Base):
        """A simulation (any policies, changes nothing) or an evaluation (the enabled ones -> recommendations),
        run by the worker in batches of subjects; `policies` is the snapshot of the policy records it used."""

        __tablename__ = "termination_runs"
        __table_args__ = (
            Index("ix_termination_runs_status", "status", "seq"),
            Index("ix_termination_runs_mode", "mode", "seq"),
            UniqueConstraint("mode", "schedule_slot", name="uq_termination_runs_slot"),
        )
        seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
        id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
        mode: Mapped[str] = mapped_column(String(12))
        status: Mapped[str] = mapped_column(String(12), default=PENDING)
        trigger: Mapped[str] = mapped_column(String(10))
        requested_by: Mapped[str] = mapped_column(String(200))
        policies: Mapped[list] = mapped_column(JsonDocument, default=list)
        window_days: Mapped[int] = mapped_column(Integer)
        as_of: Mapped[datetime]
        schedule_slot: Mapped[int | None] = mapped_column(types.BigInteger, default=None)
        subjects_seen: Mapped[int] = mapped_column(Integer, default=0)
        subjects_flagged: Mapped[int] = mapped_column(Integer, default=0)
        subjects_degraded: Mapped[int] = mapped_column(Integer, default=0)
        batches: Mapped[int] = mapped_column(Integer, default=0)
        last_seq: Mapped[int | None] = mapped_column(types.BigInteger, default=None)  # the last subject done
        counts: Mapped[dict] = mapped_column(JsonDocument, default=dict)
        timings: Mapped[dict] = mapped_column(JsonDocument, default=dict)
        error: Mapped[str | None] = mapped_column(String(500), default=None)
        lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
        lease_until: Mapped[datetime | None] = mapped_column(default=None)
        created_at: Mapped[datetime] = mapped_column(default=utcnow)
        started_at: Mapped[datetime | None] = mapped_column(default=None)
        finished_at: Mapped[datetime | None] = mapped_column(default=None)

    class TerminationRunSubject(Base):
        """A subject a run flagged: its severity, strategy and findings (with evidence)."""

        __tablename__ = "termination_run_subjects"
        __table_args__ = (Index("ix_termination_run_subjects_subject", "run_id", "subject_id"),)
        run_id: Mapped[uuid.UUID] = mapped_column(types.Uuid, primary_key=True)
        subject_seq: Mapped[int] = mapped_column(types.BigInteger, primary_key=True)
        subject_id: Mapped[uuid.UUID] = mapped_column(types.Uuid)
        severity: Mapped[str] = mapped_column(String(10))
        strategy: Mapped[str] = mapped_column(String(12))
        findings: Mapped[list] = mapped_column(JsonDocument)
        degraded: Mapped[list] = mapped_column(JsonDocument, default=list)

    class TerminationRunFinding(Base):
        """One finding code of a flagged subject in a run: what the counts by finding and `?finding=` read."""

        __tablename__ = "termination_run_findings"
        __table_args__ = (Index("ix_termination_run_findings_code", "run_id", "code", "subject_seq"),)
        run_id: Mapped[uuid.UUID] = mapped_column(types.Uuid, primary_key=True)
        subject_seq: Mapped[int] = mapped_column(types.BigInteger, primary_key=True)
        code: Mapped[str] = mapped_column(String(CODE_MAX), primary_key=True)

    class TerminationRecommendation(Base):
        """A flagged subject for an operator to accept or dismiss; at most one open per subject."""

        __tablename__ = "termination_recommendations"
        __table_args__ = (
            Index("uq_termination_recommendations_open", "subject_id", unique=True,
                  postgresql_where=text(OPEN_SQL), sqlite_where=text(OPEN_SQL)),
            Index("ix_termination_recommendations_subject", "subject_id", "status", "closed_at"),
            Index("ix_termination_recommendations_status", "status", "seq"),
        )
        seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
        id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
        subject_id: Mapped[uuid.UUID] = mapped_column(types.Uuid)
        status: Mapped[str] = mapped_column(String(12), default=OPEN)
        severity: Mapped[str] = mapped_column(String(10))
        strategy: Mapped[str] = mapped_column(String(12))
        findings: Mapped[list] = mapped_column(JsonDocument)
        fingerprint: Mapped[str] = mapped_column(String(64))
        run_id: Mapped[uuid.UUID | None] = mapped_column(types.Uuid, default=None)  # None: an evidence event
        superseded_by: Mapped[uuid.UUID | None] = mapped_column(types.Uuid, default=None)
        created_at: Mapped[datetime] = mapped_column(default=utcnow)
        evidence_at: Mapped[datetime] = mapped_column(default=utcnow)  # findings last refreshed
        closed_at: Mapped[datetime | None] = mapped_column(default=None)

    class TerminationDecision(Base):
        """An operator's accept or dismiss of a recommendation, with who, why and the evidence at that time."""

        __tablename__ = "termination_decisions"
        __table_args__ = (Index("ix_termination_decisions_subject", "subject_id", "seq"),)
        seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
        id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
        recommendation_id: Mapped[uuid.UUID] = mapped_column(types.Uuid, unique=True)
        subject_id: Mapped[uuid.UUID] = mapped_column(types.Uuid)
        decision: Mapped[str] = mapped_column(String(10))
        reason: Mapped[str] = mapped_column(Text)
        severity: Mapped[str] = mapped_column(String(10))
        strategy: Mapped[str] = mapped_column(String(12))
        findings: Mapped[list] = mapped_column(JsonDocument)
        effect: Mapped[str] = mapped_column(String(40))
        decided_by: Mapped[str] = mapped_column(String(200))
        decided_at: Mapped[datetime] = mapped_column(default=utcnow)

    return TerminationModels(TerminationPolicy, TerminationRun, TerminationRunSubject, TerminationRunFinding,
                             TerminationRecommendation, TerminationDecision)
