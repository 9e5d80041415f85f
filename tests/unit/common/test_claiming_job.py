"""The worker job loop of scheduled_jobs.py: it claims until nothing is left, and looks at a schedule only when it
has one (contact imports have none)."""
from __future__ import annotations

import threading

from services.common.scheduled_jobs import ClaimingJob


class CountingJob(ClaimingJob):
    """Finds `waiting` pieces of work, one per claim, then stops the loop at the first empty claim."""

    def __init__(self, *, waiting: int, schedule_every: float | None):
        super().__init__(poll_interval=0.0, schedule_every=schedule_every)
        self.waiting, self.claims, self.schedule_checks = waiting, 0, 0

    def run_once(self, stop=None) -> bool:
        self.claims += 1
        if self.waiting:
            self.waiting -= 1
            return True
        stop.set()
        return False

    def check_schedule(self, now=None):
        self.schedule_checks += 1


class FailingJob(CountingJob):
    """Its first claim raises (the database is away); the loop goes on."""

    def run_once(self, stop=None) -> bool:
        if self.claims == 0:
            self.claims += 1
            raise ConnectionError("database away")
        return super().run_once(stop)


def test_a_job_claims_until_nothing_is_waiting():
    job = CountingJob(waiting=3, schedule_every=3600.0)
    job.run(threading.Event())
    assert (job.claims, job.waiting) == (4, 0)


def test_a_scheduled_job_looks_at_its_schedule_when_it_starts():
    job = CountingJob(waiting=2, schedule_every=3600.0)
    job.run(threading.Event())
    assert job.schedule_checks == 1


def test_a_job_without_a_schedule_never_looks_at_one():
    job = CountingJob(waiting=2, schedule_every=None)
    job.run(threading.Event())
    assert (job.claims, job.schedule_checks) == (3, 0)


def test_a_failing_claim_does_not_end_the_loop():
    job = FailingJob(waiting=1, schedule_every=None)
    job.run(threading.Event())
    assert (job.claims, job.waiting) == (3, 0)
