"""The loop of a worker job that claims queued work and asks for scheduled work (analytics refreshes,
termination runs; contact imports, which have no schedule). Claiming a row under a lease is leased_runs.py.

No leader is needed for the schedule: every worker, every `schedule_every` seconds, asks for the work of the
current slot (slot = floor(epoch seconds / interval)) and a unique key on the slot lets exactly one request in.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from datetime import datetime


def schedule_slot(moment: datetime, interval: float) -> int:
    """The schedule slot `moment` falls in: whole intervals since the epoch."""
    return math.floor(moment.timestamp() / interval)


class ClaimingJob:
    """Claim queued work and run it until none is left, then wait; look at the schedule every `schedule_every`
    seconds (never when it is None: work with no schedule).

    Subclasses give `run_once(stop) -> bool` (claim one piece and run it; False when none was waiting),
    `check_schedule(now=None)` (ask for the current slot's work; not needed without a schedule), `what` (for
    the logs), `log`, and `runner` (a leased_runs.LeasedRunner) when they use `_release`.
    """

    what = "work"
    log = logging.getLogger("crm.worker")

    def __init__(self, *, poll_interval: float, schedule_every: float | None):
        self.poll_interval = poll_interval
        self.schedule_every = schedule_every

    def run(self, stop: threading.Event) -> None:
        """Run queued work until `stop` is set; work under way stops at its next step."""
        next_check = time.monotonic() if self.schedule_every is not None else math.inf
        while not stop.is_set():
            if time.monotonic() >= next_check:
                self._check_schedule()
                next_check = time.monotonic() + self.schedule_every
            try:
                busy = self.run_once(stop)
            except Exception:  # noqa: BLE001 - the database may be away; the next poll tries again
                self.log.warning("claiming %s failed; trying again shortly", self.what, exc_info=True)
                busy = False
            if not busy:
                stop.wait(max(0.0, min(self.poll_interval, next_check - time.monotonic())))

    def run_once(self, stop: threading.Event | None = None) -> bool:
        raise NotImplementedError

    def check_schedule(self, now: datetime | None = None):
        raise NotImplementedError

    def _release(self, key) -> None:
        """Give up the lease on `key` (its work failed outside its steps); should that fail too, the lease expires."""
        try:
            self.runner.release(key)
        except Exception:  # noqa: BLE001 - the lease expires on its own
            self.log.warning("could not release %s %s", self.what, key, exc_info=True)

    def _check_schedule(self) -> None:
        try:
            self.check_schedule()
        except Exception:  # noqa: BLE001 - the next look tries again
            self.log.warning("checking the schedule of %s failed; trying again shortly", self.what, exc_info=True)
