"""Runs: simulations (any policies; change nothing but their own rows) and evaluations (the enabled policies;
recommendations), both run by the worker over every subject in batches.

A run is requested as a pending row with a snapshot of its policies. A runner claims it (a lease, `FOR UPDATE
SKIP LOCKED` on PostgreSQL) and walks the subjects by keyset (adapter.subject_ids, CRM_TERMINATION_BATCH at a
time). Per batch: the histories are built in one read transaction, the plugins called outside any transaction,
and the flagged subjects' rows (findings with evidence, severity, strategy; for an evaluation the
recommendations) written in one transaction that also moves `last_seq` and the progress and renews the lease.
Memory holds one batch. A runner that dies leaves its lease to expire; the next claim resumes after the last
committed batch (a batch is all or nothing). The last step counts the run's rows by finding, strategy and
severity (GROUP BY) and, for a full scheduled evaluation, withdraws the open recommendations of subjects it no
longer flagged.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from services.common.db import is_database_unavailable, utcnow
from services.common.leased_runs import LeasedRunner, LeaseLost
from services.common.pagination import paginate
from services.common.problems import NotFound, Unprocessable
from services.common.runtime import Runtime
from services.common.uow import UnitOfWork, insert_or_reread

from . import recommendations
from .adapter import TerminationKit
from .models import COMPLETED, EVALUATION, OPEN, PENDING, RUNNING, SIMULATION, WITHDRAWN
from .policies import enabled_snapshots, plugin_policies, snapshot

log = logging.getLogger("crm.termination")

LEASE_SECONDS = 60.0
WRITE_ATTEMPTS = 3  # a batch's write transaction, when a concurrent evidence event made a recommendation
MAX_WINDOW_DAYS = 3650
API_TRIGGER, SCHEDULE_TRIGGER, POLICY_TRIGGER = "api", "schedule", "policy"  # who asked for a run


@dataclass(frozen=True)
class BatchTiming:
    """What one batch took: subjects, flagged, and seconds reading, evaluating and writing."""

    subjects: int
    flagged: int
    read: float
    evaluate: float
    write: float


OnBatch = Callable[[BatchTiming], None]


# -- requesting ----------------------------------------------------------------------------------------------------

def _chosen_policies(session, kit: TerminationKit, policy_ids: Sequence[uuid.UUID] | None,
                     codes: Sequence[str] | None) -> list:
    Policy = kit.models.Policy
    if policy_ids and codes:
        raise Unprocessable("Name the policies by policy_ids or by codes, not both.",
                            errors={"codes": ["Not together with policy_ids."]})
    stmt = select(Policy).order_by(Policy.seq)
    if policy_ids:
        wanted = list(dict.fromkeys(policy_ids))
        found = list(session.scalars(stmt.where(Policy.id.in_(wanted))))
        missing = sorted(str(i) for i in set(wanted) - {p.id for p in found})
        if missing:
            raise Unprocessable(f"No policy has the id {', '.join(missing)}.",
                                errors={"policy_ids": [f"Unknown policy: {m}." for m in missing]})
        return found
    if codes:
        wanted = list(dict.fromkeys(codes))
        found = list(session.scalars(stmt.where(Policy.code.in_(wanted))))
        missing = sorted(set(wanted) - {p.code for p in found})
        if missing:
            raise Unprocessable(f"No policy has the code {', '.join(missing)}.",
                                errors={"codes": [f"Unknown policy code: {m}." for m in missing]})
        return found
    found = list(session.scalars(stmt))
    if not found:
        raise Unprocessable("There is no policy to simulate: create one first.",
                            errors={"policy_ids": ["No policy exists."]})
    return found


def request_simulation(uow: UnitOfWork, kit: TerminationKit, settings, *, policy_ids=None, codes=None,
                       window_days: int | None = None, as_of: datetime | None = None, requested_by: str):
    """A pending simulation of the chosen policies (default: every policy of the service, enabled or not)."""
    if as_of is not None and as_of > utcnow():
        raise Unprocessable("A simulation judges the past: as_of may not be in the future.",
                            errors={"as_of": ["Must not be in the future."]})
    with uow:
        chosen = _chosen_policies(uow.session, kit, policy_ids, codes)
        run = kit.models.Run(id=uuid.uuid4(), mode=SIMULATION, status=PENDING, trigger=API_TRIGGER,
                             requested_by=requested_by, policies=[snapshot(p) for p in chosen],
                             window_days=window_days or settings.termination_window_days, as_of=as_of or utcnow(),
                             subjects_seen=0, subjects_flagged=0, subjects_degraded=0, batches=0, counts={},
                             timings={}, created_at=utcnow())
        uow.session.add(run)
        uow.commit()
        return run


def add_evaluation(session, kit: TerminationKit, settings, *, trigger: str, requested_by: str,
                   schedule_slot: int | None = None):
    """Add a pending full evaluation of the enabled policies to `session` (not committed); None when none is
    enabled. Unslotted requests coalesce: a pending one that no worker has claimed yet takes the current policies
    instead of a second run being queued."""
    Run = kit.models.Run
    snapshots = enabled_snapshots(session, kit)
    if not snapshots:
        return None
    if schedule_slot is None:
        waiting = session.scalar(select(Run).where(Run.mode == EVALUATION, Run.status == PENDING,
                                                   Run.schedule_slot.is_(None)).order_by(Run.seq).limit(1)
                                 .with_for_update(skip_locked=True))
        if waiting is not None:
            waiting.policies, waiting.as_of = snapshots, utcnow()
            return waiting
    run = Run(id=uuid.uuid4(), mode=EVALUATION, status=PENDING, trigger=trigger, requested_by=requested_by,
              policies=snapshots, window_days=settings.termination_window_days, as_of=utcnow(),
              schedule_slot=schedule_slot, subjects_seen=0, subjects_flagged=0, subjects_degraded=0,
              batches=0, counts={}, timings={}, created_at=utcnow())
    if schedule_slot is None:
        session.add(run)
        return run
    asked = insert_or_reread(session, run, reread=lambda: session.scalar(
        select(Run).where(Run.mode == EVALUATION, Run.schedule_slot == schedule_slot)))
    return run if asked is None else asked  # another worker asked for this slot first


def request_evaluation(runtime: Runtime, kit: TerminationKit, *, schedule_slot: int | None, trigger: str,
                       requested_by: str):
    """A pending full evaluation of the enabled policies; None when none is enabled. A second request for the
    same schedule slot returns the first one's run."""
    with runtime.uow() as uow:
        run = add_evaluation(uow.session, kit, runtime.settings, trigger=trigger, requested_by=requested_by,
                             schedule_slot=schedule_slot)
        uow.commit()
        return run


# -- reading -------------------------------------------------------------------------------------------------------

def get_run(uow: UnitOfWork, kit: TerminationKit, run_id: uuid.UUID, *, mode: str = SIMULATION):
    """One run of `mode` (404 problem when there is none)."""
    Run = kit.models.Run
    with uow:
        run = uow.session.scalar(select(Run).where(Run.id == run_id, Run.mode == mode))
    if run is None:
        raise NotFound(f"No termination {mode} with id {run_id}.")
    return run


def list_runs(uow: UnitOfWork, kit: TerminationKit, *, limit: int, cursor: str | None, mode: str = SIMULATION,
              status: str | None = None) -> dict:
    """Runs of `mode`, newest first, optionally of one status."""
    Run = kit.models.Run
    stmt = select(Run).where(Run.mode == mode)
    if status:
        stmt = stmt.where(Run.status == status)
    with uow:
        return paginate(uow.session, stmt, Run.seq, limit=limit, cursor=cursor)


def run_subjects(uow: UnitOfWork, kit: TerminationKit, run_id: uuid.UUID, *, limit: int, cursor: str | None,
                 strategy: str | None = None, severity: str | None = None, finding: str | None = None) -> dict:
    """The subjects a simulation flagged (findings and evidence), keyset-paged, filtered by strategy, severity
    and finding code."""
    m = kit.models
    get_run(uow, kit, run_id)
    stmt = select(m.RunSubject).where(m.RunSubject.run_id == run_id)
    if strategy:
        stmt = stmt.where(m.RunSubject.strategy == strategy)
    if severity:
        stmt = stmt.where(m.RunSubject.severity == severity)
    if finding:
        stmt = stmt.where(exists().where(m.RunFinding.run_id == run_id, m.RunFinding.code == finding,
                                         m.RunFinding.subject_seq == m.RunSubject.subject_seq))
    with uow:
        return paginate(uow.session, stmt, m.RunSubject.subject_seq, limit=limit, cursor=cursor)


# -- running -------------------------------------------------------------------------------------------------------

class RunRunner(LeasedRunner):
    """Claims and runs simulations and evaluations of one service; the worker's job drives it.

    Claiming, locking, releasing and failing a run are the kit's LeasedRunner (pending, or running under an
    expired lease, is claimable).
    """

    noun = "run"

    def __init__(self, runtime: Runtime, kit: TerminationKit, *, lease_seconds: float = LEASE_SECONDS,
                 batch_size: int | None = None, owner: str | None = None):
        super().__init__(runtime, lease_seconds=lease_seconds, owner=owner)
        self.kit, self.model = kit, kit.models.Run
        self.batch_size = batch_size or runtime.settings.termination_batch

    def run(self, run_id: uuid.UUID, *, stop: threading.Event | None = None, on_batch: OnBatch | None = None):
        """Run a claimed run batch by batch from where it stands to the end (or until `stop`); returns it.

        An error in a batch fails the run (the error kept); LeaseLost is raised.
        """
        Run = self.kit.models.Run
        with self.runtime.session_factory() as session:
            run = session.scalar(select(Run).where(Run.id == run_id))
        if run is None or run.status != RUNNING or run.lease_owner != self.owner:
            raise LeaseLost(f"run {run_id} is not held by this runner")
        policies = plugin_policies(run.policies)
        after = run.last_seq
        while True:
            if stop is not None and stop.is_set():
                self.release(run_id)
                return self._get(run_id)
            try:
                after, done = self._batch(run, policies, after, on_batch)
                if done:
                    return self._finish(run_id)
            except LeaseLost:
                raise
            except Exception as exc:
                if is_database_unavailable(exc):
                    raise  # not the run's fault: resumed after its last committed batch once the database is back
                log.error("termination %s %s failed", run.mode, run_id, exc_info=exc,
                          extra={"event": "termination.run_failed", "run_id": str(run_id)})
                self.fail(run_id, f"{type(exc).__name__}: {exc}")
                return self._get(run_id)

    def _batch(self, run, policies, after: int | None, on_batch: OnBatch | None) -> tuple[int | None, bool]:
        adapter = self.kit.adapter
        started = time.perf_counter()
        with self.runtime.session_factory() as session, session.begin():
            ids = adapter.subject_ids(session, after, self.batch_size)
            histories = adapter.histories(session, [subject_id for _, subject_id in ids], run.as_of,
                                          run.window_days) if ids else {}
        read_done = time.perf_counter()
        plugins = self.runtime.plugins
        subject_rows, finding_rows, flagged, degraded = [], [], {}, 0
        for seq, subject_id in ids:
            found = histories.get(subject_id)
            if found is None:
                continue
            evaluation = plugins.evaluate_termination(found[0], found[1], policies)
            degraded += evaluation.is_degraded
            if not evaluation.flagged:
                continue
            flagged[subject_id] = evaluation
            subject_rows.append({"run_id": run.id, "subject_seq": seq, "subject_id": subject_id,
                                 "severity": evaluation.severity, "strategy": evaluation.strategy,
                                 "findings": recommendations.findings_json(evaluation),
                                 "degraded": [d.to_dict() for d in evaluation.degraded]})
            finding_rows.extend({"run_id": run.id, "subject_seq": seq, "code": code}
                                for code in sorted({f.code for f in evaluation.findings}))
        evaluated = time.perf_counter()
        for attempt in range(WRITE_ATTEMPTS):
            try:
                held, timing = self._write(run, ids, subject_rows, finding_rows, flagged, degraded,
                                           (started, read_done, evaluated))
                break
            except IntegrityError:
                # An evidence event recommended one of these subjects meanwhile (the one-open index refused ours):
                # written again, the batch finds that recommendation and refreshes or supersedes it.
                if attempt + 1 == WRITE_ATTEMPTS:
                    raise
        if on_batch is not None:
            on_batch(timing)
        return held.last_seq, len(ids) < self.batch_size

    def _write(self, run, ids, subject_rows, finding_rows, flagged, degraded, clock):
        """One batch's rows, recommendations and progress, in one transaction under the run's lock."""
        m, (started, read_done, evaluated) = self.kit.models, clock
        with self.runtime.uow() as uow:
            held = self.lock(uow.session, run.id)
            if subject_rows:
                uow.session.execute(insert(m.RunSubject), subject_rows)
                uow.session.execute(insert(m.RunFinding), finding_rows)
            if run.mode == EVALUATION and flagged:
                counted = recommendations.apply_evaluations(
                    uow, self.kit, flagged, dismissal_days=self.runtime.settings.termination_dismissal_days,
                    run_id=run.id)
                held.counts = _add_counts(held.counts, counted)
            if ids:
                held.last_seq = ids[-1][0]
            held.subjects_seen += len(ids)
            held.subjects_flagged += len(subject_rows)
            held.subjects_degraded += degraded
            held.batches += 1
            timing = BatchTiming(len(ids), len(subject_rows), round(read_done - started, 4),
                                 round(evaluated - read_done, 4), round(time.perf_counter() - evaluated, 4))
            held.timings = _add_timing(held.timings, timing)
            held.lease_until = utcnow() + self.lease
            uow.commit()
            return held, timing

    def _finish(self, run_id: uuid.UUID):
        m = self.kit.models
        with self.runtime.uow() as uow:
            session = uow.session
            held = self.lock(session, run_id)
            subjects = select(m.RunSubject).where(m.RunSubject.run_id == run_id).subquery()
            by_strategy = dict(session.execute(select(subjects.c.strategy, func.count())
                                               .group_by(subjects.c.strategy)).all())
            by_severity = dict(session.execute(select(subjects.c.severity, func.count())
                                               .group_by(subjects.c.severity)).all())
            by_finding = dict(session.execute(select(m.RunFinding.code, func.count())
                                              .where(m.RunFinding.run_id == run_id)
                                              .group_by(m.RunFinding.code)).all())
            counts = {**held.counts, "by_finding": by_finding, "by_strategy": by_strategy,
                      "by_severity": by_severity}
            if held.mode == EVALUATION:
                counts = _add_counts(counts, {"withdrawn": self._withdraw(session, held)})
            held.counts = counts
            held.status, held.finished_at = COMPLETED, utcnow()
            held.lease_owner = held.lease_until = None
            uow.commit()
            return held

    def _withdraw(self, session, run) -> int:
        """Withdraw the open recommendations made before this run whose subjects it did not flag."""
        Rec, Subject = self.kit.models.Recommendation, self.kit.models.RunSubject
        flagged = exists().where(Subject.run_id == run.id, Subject.subject_id == Rec.subject_id)
        return session.execute(
            update(Rec).where(Rec.status == OPEN, Rec.created_at < run.started_at, ~flagged)
            .values(status=WITHDRAWN, closed_at=utcnow()).execution_options(synchronize_session=False)).rowcount

    def _get(self, run_id: uuid.UUID):
        with self.runtime.session_factory() as session:
            return session.scalar(select(self.kit.models.Run).where(self.kit.models.Run.id == run_id))


def _add_counts(counts: dict, more: dict) -> dict:
    current = dict(counts.get("recommendations") or {})
    for name, value in more.items():
        current[name] = current.get(name, 0) + value
    return {**counts, "recommendations": current}


def _add_timing(timings: dict, batch: BatchTiming) -> dict:
    """Cumulative seconds reading, evaluating and writing, and the slowest batch."""
    total = batch.read + batch.evaluate + batch.write
    return {"read": round(timings.get("read", 0) + batch.read, 3),
            "evaluate": round(timings.get("evaluate", 0) + batch.evaluate, 3),
            "write": round(timings.get("write", 0) + batch.write, 3),
            "slowest_batch": round(max(timings.get("slowest_batch", 0), total), 3)}
