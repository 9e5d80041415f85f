"""Running a refresh: every measure of one currency at one instant, step by step, into a snapshot.

A refresh is requested (a pending row), claimed by one runner (a lease, `FOR UPDATE SKIP LOCKED`), and run as
STEPS, each step one transaction that also records the progress (`step`, `steps_done`, `timings`) and renews
the lease. Each step locks the refresh's row for its whole transaction, so a live runner is never overtaken
however long a pass takes (a claim skips locked rows); the lease only bounds the time between steps. A runner
that died leaves its refresh running with a lease that expires; the next claim restarts it from `base` (whose
first act is to delete the partial rows), since a half-written snapshot is not worth resuming. At most one
refresh per currency runs at a time: the claim passes over a pending refresh while another of its currency is
running, and a unique partial index (uq_analytics_refreshes_running) settles two claims racing for it.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime

from marshmallow import ValidationError
from sqlalchemy import and_, delete, exists, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from services.common.db import is_database_unavailable, is_postgres, utcnow
from services.common.leased_runs import LeasedRunner, LeaseLost
from services.common.problems import Conflict, NotFound, Unprocessable
from services.common.runtime import Runtime
from services.common.uow import UnitOfWork
from services.common.currencies import ISO_4217

from ..models import AnalyticsRefresh, CustomerAnalytics
from ..segments.membership import refresh_memberships
from . import measures
from .params import Parameters, parameters_from_settings
from .snapshots import COMPLETED, FAILED, KEEP_COMPLETED, PENDING, RUNNING, SUPERSEDED
from .stages import apply_stages
from .summaries import summarize

log = logging.getLogger("crm.contacts.analytics")

STEPS = ("base", "abc", "rfm", "clv", "profitability", "pyramid", "lifecycle", "stages", "segments", "summary",
         "finish")
LEASE_SECONDS = 60.0
WORK_MEM = "256MB"  # PostgreSQL's work_mem in a step's transaction
OnStep = Callable[[AnalyticsRefresh], None]


class RefreshRunner(LeasedRunner):
    """Requests, claims and runs refreshes; used by the worker's job, the API and `crm analytics refresh`.

    Claiming, locking, releasing and failing are the kit's LeasedRunner, with one more rule for a claim: a
    pending refresh waits while another of its currency is running.
    """

    model, noun = AnalyticsRefresh, "refresh"

    def __init__(self, runtime: Runtime, *, lease_seconds: float = LEASE_SECONDS, owner: str | None = None):
        super().__init__(runtime, lease_seconds=lease_seconds, owner=owner)
        self.defaults = parameters_from_settings(runtime.settings)

    # -- requesting and claiming -------------------------------------------------------------------------------
    def request(self, *, currency: str, parameters: Mapping | None, as_of: datetime | None, trigger: str,
                requested_by: str, schedule_slot: int | None = None, uow: UnitOfWork | None = None
                ) -> AnalyticsRefresh:
        """A pending refresh of `currency` at `as_of` (default now) with the suite's parameters and `parameters`.

        Invalid overrides are a 422 naming `parameters.<name>`. A scheduled request names its slot: a second
        request for the same (currency, slot) returns the first one's refresh. `uow` is the caller's unit of
        work (a view's, so the refresh commits with its stored idempotent response); by default its own.
        """
        try:
            params = self.defaults.merged(parameters)
        except ValidationError as exc:
            errors = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
            raise Unprocessable("The refresh's parameters are not valid: " + ", ".join(sorted(errors)) + ".",
                                errors={f"parameters.{name}": messages for name, messages in errors.items()}) from None
        currency = (currency or "").strip().upper()
        if currency not in ISO_4217:
            raise Unprocessable(f"{currency!r} is not an ISO 4217 currency code.",
                                errors={"currency": ["Not an ISO 4217 currency code such as EUR."]})
        with uow or self.runtime.uow() as uow:
            refresh = AnalyticsRefresh(currency=currency, as_of=as_of or utcnow(), parameters=params.to_json(),
                                       trigger=trigger, requested_by=requested_by, schedule_slot=schedule_slot,
                                       status=PENDING, steps_total=len(STEPS), summary={}, timings={})
            uow.session.add(refresh)
            try:
                uow.commit()
            except IntegrityError:
                if schedule_slot is None:
                    raise
                uow.session.rollback()
                return uow.session.scalar(select(AnalyticsRefresh).where(
                    AnalyticsRefresh.currency == currency, AnalyticsRefresh.schedule_slot == schedule_slot))
            return refresh

    def claim(self) -> uuid.UUID | None:
        """Lease the oldest refresh that may run now (pending, or running under an expired lease); its id, or None."""
        return self._claim()

    def get(self, refresh_id: uuid.UUID) -> AnalyticsRefresh:
        """The refresh as it is now (404 problem when there is none)."""
        with self.runtime.session_factory() as session:
            refresh = session.scalar(select(AnalyticsRefresh).where(AnalyticsRefresh.id == refresh_id))
        if refresh is None:
            raise NotFound(f"No analytics refresh with id {refresh_id}.")
        return refresh

    def fail(self, refresh_id: uuid.UUID, reason: str, *, step: str | None = None) -> AnalyticsRefresh:
        """End a refresh this runner holds as failed (the reason and the failing step kept, its partial rows
        deleted); returns it."""
        return super().fail(refresh_id, reason, step=step)

    def _on_fail(self, session, held: AnalyticsRefresh, *, step: str | None = None) -> None:
        if step is not None:
            held.step = step
        _delete_rows(session, held.id)

    # -- running -------------------------------------------------------------------------------------------------
    def run_here(self, refresh_id: uuid.UUID, on_step: OnStep | None = None) -> AnalyticsRefresh:
        """Claim this refresh and run it in this process (the CLI's and `?refresh=true`'s way); returns it as it ended.

        409 problem when another refresh of its currency is running or it has ended. Interrupted (Ctrl-C), the
        refresh is failed rather than left for a worker: whoever pressed Ctrl-C meant it to stop.
        """
        if self._claim(refresh_id) is None:
            refresh = self.get(refresh_id)
            if refresh.status in (COMPLETED, FAILED, SUPERSEDED):
                raise Conflict(f"The refresh {refresh_id} has already ended ({refresh.status}).")
            raise Conflict(f"Another refresh of {refresh.currency} is running; this one waits for a worker.")
        try:
            return self.run(refresh_id, on_step=on_step)
        except KeyboardInterrupt:
            self.fail(refresh_id, "Interrupted from the command line.")
            raise

    def run(self, refresh_id: uuid.UUID, *, on_step: OnStep | None = None,
            stop: threading.Event | None = None) -> AnalyticsRefresh:
        """Run a claimed refresh from `base` to `finish` (or until `stop`); returns it as it ended.

        A step that raises fails the refresh (status failed, the step and error kept) and the refresh is
        returned; LeaseLost and a database outage are raised (the lease then expires and another claim restarts
        it). `on_step` is called with the refresh after each committed step (the CLI's progress bar).
        """
        refresh = self.get(refresh_id)
        if refresh.status != RUNNING or refresh.lease_owner != self.owner:
            raise LeaseLost(f"refresh {refresh_id} is not held by this runner")
        params = Parameters.from_json(refresh.parameters)
        for index, step in enumerate(STEPS):
            if stop is not None and stop.is_set():
                self.release(refresh_id)
                return self.get(refresh_id)
            try:
                refresh = self._run_step(refresh_id, index, step, params)
            except LeaseLost:
                raise
            except Exception as exc:
                if is_database_unavailable(exc):
                    raise
                log.error("analytics refresh %s: the %s step failed", refresh_id, step, exc_info=exc,
                          extra={"event": "analytics.step_failed", "refresh_id": str(refresh_id), "step": step})
                return self.fail(refresh_id, f"The {step} step failed: {type(exc).__name__}: {exc}", step=step)
            if on_step is not None:
                on_step(refresh)
        return refresh

    def _run_step(self, refresh_id: uuid.UUID, index: int, step: str, params: Parameters) -> AnalyticsRefresh:
        started = time.perf_counter()
        with self.runtime.uow() as uow:
            if is_postgres(uow.session):
                # A pass groups or ranks every customer at once: in memory rather than spilled in batches to
                # disk (or, at 4 MB, planned as an index walk of the purchases in contact order instead).
                uow.session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
            held = self.lock(uow.session, refresh_id)
            if index == 0:
                held.timings, held.summary, held.error = {}, {}, None
            held.step = step
            self._do_step(uow, held, step, params)
            held.steps_done = index + 1
            held.timings = {**held.timings, step: round(time.perf_counter() - started, 3)}
            if held.status == RUNNING:
                held.lease_until = utcnow() + self.lease
            uow.commit()
            return held

    def _do_step(self, uow, held: AnalyticsRefresh, step: str, params: Parameters) -> None:
        session = uow.session
        if step == "base":
            _delete_rows(session, held.id)  # a restarted refresh's partial snapshot
            held.customers = measures.base(session, held, params)
        elif step in measures.PASSES:
            measures.PASSES[step](session, held, params)
        elif step == "stages":
            apply_stages(uow, held, params, self.runtime.plugins)
        elif step == "segments":
            refresh_memberships(uow, held, utcnow())
        elif step == "summary":
            held.summary = summarize(session, held, params)
        elif step == "finish":
            held.status, held.finished_at = COMPLETED, utcnow()
            held.lease_owner = held.lease_until = None
            session.flush()
            _prune(session, held.currency)
        else:  # pragma: no cover - STEPS and this dispatch are written together
            raise ValueError(f"unknown step {step}")

    # -- leases --------------------------------------------------------------------------------------------------
    def claimable(self, now: datetime):
        """Pending while no other refresh of its currency runs, or running under an expired lease."""
        r, other = AnalyticsRefresh, aliased(AnalyticsRefresh)
        busy = exists().where(other.currency == r.currency, other.status == RUNNING, other.id != r.id)
        return or_(and_(r.status == PENDING, ~busy),
                   and_(r.status == RUNNING, or_(r.lease_until.is_(None), r.lease_until < now)))

    def _claim(self, refresh_id: uuid.UUID | None = None) -> uuid.UUID | None:
        where = () if refresh_id is None else (AnalyticsRefresh.id == refresh_id,)
        try:
            return self._claim_first(*where, values={"step": None, "steps_done": 0})
        except IntegrityError:
            return None  # another runner started a refresh of this currency meanwhile (uq_analytics_refreshes_running)


def _delete_rows(session, refresh_id: uuid.UUID) -> None:
    session.execute(delete(CustomerAnalytics).where(CustomerAnalytics.refresh_id == refresh_id)
                    .execution_options(synchronize_session=False))


def _prune(session, currency: str) -> None:
    """Supersede the currency's completed refreshes beyond the newest KEEP_COMPLETED and delete their rows."""
    r = AnalyticsRefresh
    old = session.scalars(select(r.id).where(r.currency == currency, r.status == COMPLETED)
                          .order_by(r.seq.desc()).offset(KEEP_COMPLETED)).all()
    if not old:
        return
    session.execute(update(r).where(r.id.in_(old)).values(status=SUPERSEDED, updated_at=utcnow())
                    .execution_options(synchronize_session=False))
    session.execute(delete(CustomerAnalytics).where(CustomerAnalytics.refresh_id.in_(old))
                    .execution_options(synchronize_session=False))
