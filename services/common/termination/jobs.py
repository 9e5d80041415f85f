"""The worker's termination job: run the simulations and evaluations that are asked for, and ask for an
evaluation of the enabled policies on a schedule.

Runs are pending rows; any worker claims one (runs.py: a lease, `FOR UPDATE SKIP LOCKED`) and runs it batch by
batch. The schedule needs no leader: every worker, once a minute, asks for the evaluation of the current slot
(slot = floor(epoch seconds / CRM_TERMINATION_EVALUATE_INTERVAL)), and the unique (mode, schedule_slot) key
lets exactly one such request in however many workers ask. With no enabled policy nothing is asked for.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime

from sqlalchemy import select

from services.common.db import is_database_unavailable, utcnow
from services.common.runtime import Runtime
from services.common.scheduled_jobs import ClaimingJob, schedule_slot

from .adapter import TerminationKit
from .models import EVALUATION
from .runs import SCHEDULE_TRIGGER, LeaseLost, OnBatch, RunRunner, request_evaluation

log = logging.getLogger("crm.termination")

POLL_INTERVAL = 1.0  # seconds between looks for a pending run when there was none
SCHEDULE_EVERY = 60.0  # seconds between looks at the schedule
SCHEDULE_REQUESTER = "schedule"


class TerminationJob(ClaimingJob):
    """Claim a run, run it, look again; ask for the scheduled evaluation; survive failures."""

    what, log = "a termination run", log

    def __init__(self, runtime: Runtime, kit: TerminationKit, *, poll_interval: float = POLL_INTERVAL,
                 schedule_every: float = SCHEDULE_EVERY, **runner_options):
        super().__init__(poll_interval=poll_interval, schedule_every=schedule_every)
        self.runtime, self.kit = runtime, kit
        self.runner = RunRunner(runtime, kit, **runner_options)

    def run_once(self, stop: threading.Event | None = None, *, on_batch: OnBatch | None = None) -> bool:
        """Claim one run and run it; False when none was waiting."""
        run_id = self.runner.claim()
        if run_id is None:
            return False
        extra = {"run_id": str(run_id), "subject_kind": self.kit.kind}
        try:
            run = self.runner.run(run_id, stop=stop, on_batch=on_batch)
        except LeaseLost as exc:
            log.warning("termination run %s taken over by another worker: %s", run_id, exc,
                        extra={"event": "termination.lease_lost", **extra})
            return True
        except Exception as exc:  # noqa: BLE001 - one run's trouble must not end the job
            if not is_database_unavailable(exc):
                log.error("termination run %s failed outside its batches", run_id, exc_info=exc,
                          extra={"event": "termination.failed", **extra})
            self._release(run_id)  # resumed after its last committed batch by the next claim
            return not is_database_unavailable(exc)
        log.info("termination %s %s %s (%s subjects, %s flagged)", run.mode, run_id, run.status, run.subjects_seen,
                 run.subjects_flagged, extra={"event": f"termination.{run.status}", **extra})
        return True

    def check_schedule(self, now: datetime | None = None):
        """Ask for the current slot's evaluation (once per slot, whoever asks); None when off or nothing enabled."""
        interval = self.runtime.settings.termination_evaluate_interval
        if interval <= 0:
            return None
        slot = schedule_slot(now or utcnow(), interval)
        Run = self.kit.models.Run
        with self.runtime.session_factory() as session:
            asked = session.scalar(select(Run).where(Run.mode == EVALUATION, Run.schedule_slot == slot))
        if asked is not None:
            return asked
        return request_evaluation(self.runtime, self.kit, schedule_slot=slot, trigger=SCHEDULE_TRIGGER,
                                  requested_by=SCHEDULE_REQUESTER)
