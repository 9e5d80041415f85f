"""The contacts worker's analytics job: run the refreshes that are asked for, and ask for one on a schedule.

Refreshes are requested by the API, the command line and the schedule as pending rows; any worker claims one
(analytics/refresh.py: a lease, `FOR UPDATE SKIP LOCKED`) and runs it step by step. The schedule needs no
leader: every worker, once a minute, asks for the refresh of the current slot (slot = floor(epoch seconds /
CRM_ANALYTICS_REFRESH_INTERVAL)) of the base currency, and the unique (currency, schedule_slot) key lets
exactly one such request in however many workers ask; the others find it there.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime

from sqlalchemy import select

from services.common.db import is_database_unavailable, utcnow
from services.common.runtime import Runtime
from services.common.scheduled_jobs import ClaimingJob, schedule_slot

from ..models import AnalyticsRefresh
from .refresh import LeaseLost, RefreshRunner

log = logging.getLogger("crm.contacts.analytics")

POLL_INTERVAL = 1.0  # seconds between looks for a pending refresh when there was none
SCHEDULE_EVERY = 60.0  # seconds between looks at the schedule
SCHEDULE_TRIGGER = "schedule"
SCHEDULE_REQUESTER = "schedule"


class AnalyticsJob(ClaimingJob):
    """The worker's background job: claim a refresh, run it, look again; ask for scheduled ones; survive failures."""

    what, log = "an analytics refresh", log

    def __init__(self, runtime: Runtime, *, poll_interval: float = POLL_INTERVAL,
                 schedule_every: float = SCHEDULE_EVERY, **runner_options):
        super().__init__(poll_interval=poll_interval, schedule_every=schedule_every)
        self.runtime = runtime
        self.runner = RefreshRunner(runtime, **runner_options)

    def run_once(self, stop: threading.Event | None = None) -> bool:
        """Claim one refresh and run it; False when none was waiting (or the database is unavailable)."""
        refresh_id = self.runner.claim()
        if refresh_id is None:
            return False
        extra = {"refresh_id": str(refresh_id)}
        try:
            refresh = self.runner.run(refresh_id, stop=stop)
        except LeaseLost as exc:
            log.warning("analytics refresh %s taken over by another worker: %s", refresh_id, exc,
                        extra={"event": "analytics.lease_lost", **extra})
            return True
        except Exception as exc:  # noqa: BLE001 - one refresh's trouble must not end the job
            if is_database_unavailable(exc):
                # Not the refresh's fault: its lease expires and a claim restarts it once the database is back.
                log.warning("analytics refresh %s paused: database unavailable (%s)", refresh_id,
                            type(exc).__name__, extra={"event": "analytics.database_unavailable", **extra})
                return False
            log.error("analytics refresh %s failed outside its steps", refresh_id, exc_info=exc,
                      extra={"event": "analytics.failed", **extra})
            self._release(refresh_id)
            return True
        log.info("analytics refresh %s %s (%s customers)", refresh_id, refresh.status, refresh.customers,
                 extra={"event": f"analytics.{refresh.status}", **extra})
        return True

    def check_schedule(self, now: datetime | None = None) -> AnalyticsRefresh | None:
        """Ask for the current slot's refresh of the base currency (once per slot, whoever asks); None when off."""
        interval = self.runtime.settings.analytics_refresh_interval
        if interval <= 0:
            return None
        currency, slot = self.runtime.settings.base_currency, schedule_slot(now or utcnow(), interval)
        with self.runtime.session_factory() as session:
            # Asked for already (by this worker or another): the usual case, every minute but a slot's first,
            # answered without an insert for the unique key to refuse.
            asked = session.scalar(select(AnalyticsRefresh).where(AnalyticsRefresh.currency == currency,
                                                                  AnalyticsRefresh.schedule_slot == slot))
        if asked is not None:
            return asked
        return self.runner.request(currency=currency, parameters=None, as_of=None,
                                   trigger=SCHEDULE_TRIGGER, requested_by=SCHEDULE_REQUESTER, schedule_slot=slot)
