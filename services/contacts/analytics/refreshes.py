"""Asking for a refresh over HTTP and following it: the use cases behind /api/v1/analytics/refreshes.

A request only stores a pending refresh; a worker's AnalyticsJob runs it (jobs.py), so the caller follows its
progress on the refresh's own URL. The rules of the request itself (parameters merged over the suite's,
checked, 422 naming `parameters.<name>`) are RefreshRunner.request's, shared with the schedule and the CLI.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from services.common.db import utcnow
from services.common.pagination import paginate
from services.common.problems import Unprocessable
from services.common.runtime import Runtime
from services.common.uow import UnitOfWork

from ..models import AnalyticsRefresh
from .refresh import RefreshRunner
from .snapshots import COMPLETED, FAILED, PENDING, RUNNING, SUPERSEDED

API_TRIGGER = "api"
STATUSES = (PENDING, RUNNING, COMPLETED, FAILED, SUPERSEDED)
SORTS = {"created_at": AnalyticsRefresh.created_at, "as_of": AnalyticsRefresh.as_of,
         "finished_at": AnalyticsRefresh.finished_at}


def request_refresh(runtime: Runtime, *, currency: str | None, as_of: datetime | None, parameters: dict | None,
                    requested_by: str, uow: UnitOfWork | None = None) -> AnalyticsRefresh:
    """A pending refresh of `currency` (default the base currency) as of `as_of` (default now) for a worker."""
    if as_of is not None and as_of > utcnow():
        raise Unprocessable("A refresh describes the past: as_of may not be in the future.",
                            errors={"as_of": ["Must not be in the future."]})
    return RefreshRunner(runtime).request(currency=currency or runtime.settings.base_currency,
                                          parameters=parameters, as_of=as_of, trigger=API_TRIGGER,
                                          requested_by=requested_by, uow=uow)


def get_refresh(runtime: Runtime, refresh_id) -> AnalyticsRefresh:
    """One refresh as it is now (404 problem when there is none)."""
    return RefreshRunner(runtime).get(refresh_id)


def list_refreshes(uow: UnitOfWork, *, limit: int, cursor: str | None, status: str | None = None,
                   currency: str | None = None, sort: str | None = None) -> dict:
    """Refreshes (by default newest first), optionally of one status and currency, one page at a time."""
    stmt = select(AnalyticsRefresh)
    if status:
        stmt = stmt.where(AnalyticsRefresh.status == status)
    if currency:
        stmt = stmt.where(AnalyticsRefresh.currency == currency.upper())
    with uow:
        return paginate(uow.session, stmt, AnalyticsRefresh.seq, limit=limit, cursor=cursor, sort=sort,
                        columns=SORTS)


def progress(refresh: AnalyticsRefresh) -> float:
    """Percent of the steps done, to one decimal (100 once completed)."""
    if refresh.status == COMPLETED or not refresh.steps_total:
        return 100.0 if refresh.status == COMPLETED else 0.0
    return round(100.0 * refresh.steps_done / refresh.steps_total, 1)
