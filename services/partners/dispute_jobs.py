"""The partners worker's dispute SLA job: every so often, record crm.dispute.overdue for disputes past their SLA.

No leader is needed: every worker runs the job, and disputes.mark_overdue claims rows with `SKIP LOCKED` and
sets `overdue_at` with the event, so each dispute's overdue event is recorded once whichever worker finds it.
"""
from __future__ import annotations

import logging
import threading

from services.common.runtime import Runtime

from . import disputes

log = logging.getLogger("crm.partners.disputes")

CHECK_EVERY = 60.0  # seconds between looks for disputes past their SLA


class DisputeSlaJob:
    """Marks overdue disputes in batches until none is left, then waits; survives a database outage."""

    def __init__(self, runtime: Runtime, *, check_every: float = CHECK_EVERY, batch: int = 100):
        self.runtime = runtime
        self.check_every = check_every
        self.batch = batch

    def run(self, stop: threading.Event) -> None:
        """Look for overdue disputes every `check_every` seconds until `stop` is set."""
        while not stop.is_set():
            try:
                self.run_once(stop)
            except Exception:  # the database may be away; the next look tries again
                log.warning("marking overdue disputes failed; trying again shortly", exc_info=True)
            stop.wait(self.check_every)

    def run_once(self, stop: threading.Event | None = None) -> int:
        """Mark every dispute now past its SLA, a batch per transaction; returns how many were marked."""
        total = 0
        sla_hours = self.runtime.settings.partners_dispute_sla_hours
        while stop is None or not stop.is_set():
            marked = disputes.mark_overdue(self.runtime.uow(), sla_hours=sla_hours, batch=self.batch)
            total += marked
            if marked < self.batch:
                break
        if total:
            log.info("%s disputes passed their SLA", total, extra={"event": "disputes.overdue", "count": total})
        return total
