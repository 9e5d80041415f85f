"""Renewals and expiry: the notices a contract period gives, the job that publishes them, and the lists of them.

Once a day, just after midnight UTC (CRM_PARTNERS_RENEWAL_INTERVAL), every partners worker runs `run_once`: it
publishes crm.contract.expiring for the terms in force that entered their notice period (periods.py), and at the end
crm.contract.renewed (auto_renew: the next period is made as a new terms version by `service.change_terms`,
the same code path as any terms change, so it gets its version, its ETag and its crm.contract.terms_changed)
or crm.contract.expired.

Each notice is published once per (contract, terms version, kind), whichever worker and however often it runs:
the `contract_notices` row is the claim, inserted with ON CONFLICT DO NOTHING in the transaction that writes
the events. On PostgreSQL a second worker's insert waits for the first's transaction and then skips the row, so
two workers racing publish nothing twice. Candidates are found by one query per batch (BATCH_SIZE contracts, in
`seq` order), claimed with one insert and their events written in the same transaction; only a renewal costs
a few statements per contract (it is a terms change). A run that renews makes new periods, so it looks again
until a pass renews nothing: a worker that was stopped for longer than a period catches up period by period.
"""
from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import and_, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from services.common.db import is_database_unavailable, utcnow
from services.common.etags import Precondition
from services.common.pagination import paginate
from services.common.problems import Problem
from services.common.runtime import Runtime
from services.common.uow import UnitOfWork

from . import periods, service
from .models import CONTRACT_SORTS, Contract, ContractNotice, ContractTerms, Partner

log = logging.getLogger("crm.partners.renewals")

BATCH_SIZE = 500
RETRY_AFTER = 60.0  # seconds before a run that failed (the database away) is tried again
ACTOR = "renewals"  # changed_by of the terms versions a renewal makes
MAX_NOTICE_DAYS = 730  # the schemas' limit on notice_period_days: bounds the scan by end date
DEFAULT_NOTICE_WINDOW = 90  # days ahead the portal's notice list looks by default

_IN_FORCE = and_(ContractTerms.contract_id == Contract.id, ContractTerms.version == Contract.current_version)
_DEADLINE = periods.notice_deadline_sql(ContractTerms.effective_to, ContractTerms.notice_period_days)
EXPIRING_SORTS = {**CONTRACT_SORTS, "notice_deadline": _DEADLINE}

Pause = Callable[[str], None]


@dataclass
class RunResult:
    """What one run published: notices of each kind, and renewals that failed (tried again next run)."""

    expiring: int = 0
    expired: int = 0
    renewed: int = 0
    failed: int = 0


# -- the run ------------------------------------------------------------------------------------------------

def run_once(runtime: Runtime, today: date | None = None, *, batch_size: int = BATCH_SIZE,
             pause: Pause | None = None) -> RunResult:
    """Publish every notice due on `today` (default: today, UTC) that no run published before.

    `pause(kind)` is called with each batch claimed and not yet committed (tests hold a run there to race another).
    """
    today = today or utcnow().date()
    result = RunResult()
    while True:
        renewed = result.renewed
        for rows, uow in _batches(runtime, _entering_notice(today), batch_size):
            _publish_expiring(uow, rows, result)
            _commit(uow, pause, "expiring")
        for rows, uow in _batches(runtime, _at_end(today), batch_size):
            _publish_ends(uow, rows, result)
            _commit(uow, pause, "end")
        if result.renewed == renewed:
            return result


def _entering_notice(today: date):
    """The terms in force whose notice period has begun and whose end has not come, without an expiring notice."""
    return (_candidates()
            .where(ContractTerms.effective_to > today,
                   # A bound on the end date alone, so an index serves the scan; the deadline decides.
                   ContractTerms.effective_to <= today + timedelta(days=MAX_NOTICE_DAYS),
                   _DEADLINE <= today, Partner.status != "terminated",
                   ~_noticed("expiring")))


def _at_end(today: date):
    """The terms in force that have reached their end, with neither an expired nor a renewed notice."""
    return _candidates().where(ContractTerms.effective_to <= today, ~_noticed("expired"), ~_noticed("renewed"))


def _candidates():
    return (select(Contract, ContractTerms, Partner.status)
            .join(ContractTerms, _IN_FORCE)
            .join(Partner, Partner.id == Contract.partner_id)
            .where(ContractTerms.effective_to.is_not(None)))


def _noticed(kind: str):
    return exists().where(ContractNotice.contract_id == Contract.id, ContractNotice.version == Contract.current_version,
                          ContractNotice.kind == kind)


def _batches(runtime: Runtime, stmt, batch_size: int) -> Iterator[tuple[list, UnitOfWork]]:
    """Each batch of candidates in `seq` order, in a unit of work of its own that the caller commits."""
    after = 0
    while True:
        with runtime.uow() as uow:
            rows = uow.session.execute(stmt.where(Contract.seq > after).order_by(Contract.seq)
                                       .limit(batch_size)).all()
            if not rows:
                return
            after = rows[-1][0].seq
            yield rows, uow
        if len(rows) < batch_size:
            return


def _commit(uow: UnitOfWork, pause: Pause | None, kind: str) -> None:
    if pause is not None:
        pause(kind)
    uow.commit()


def _claim(session, keys: list[tuple[uuid.UUID, int]], kind: str) -> set[uuid.UUID]:
    """Insert the notices' rows; returns the contracts whose row went in (the others were published already).

    One INSERT ... ON CONFLICT DO NOTHING RETURNING, in key order so two workers wait for each other in one order.
    """
    if not keys:
        return set()
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    now = utcnow()
    rows = [{"contract_id": cid, "version": version, "kind": kind, "published_at": now}
            for cid, version in sorted(keys, key=lambda key: str(key[0]))]
    table = ContractNotice.__table__
    stmt = insert(table).values(rows).on_conflict_do_nothing().returning(table.c.contract_id)
    return set(session.scalars(stmt))


def _event(contract: Contract, terms: ContractTerms, **extra) -> dict:
    return {"contract_id": contract.id, "partner_id": contract.partner_id, "version": terms.version,
            "effective_to": terms.effective_to, "notice_deadline": periods.notice_deadline(terms),
            "occurred_at": utcnow(), **extra}


def _publish_expiring(uow: UnitOfWork, rows: list, result: RunResult) -> None:
    claimed = _claim(uow.session, [(c.id, c.current_version) for c, _t, _s in rows], "expiring")
    for contract, terms, _status in rows:
        if contract.id in claimed:
            uow.add_event("crm.contract.expiring", _event(contract, terms), subject=contract.id)
            result.expiring += 1


def _renews(terms: ContractTerms, status: str) -> bool:
    # A terminated partner's contracts can no longer change (service._not_terminated): they expire.
    return terms.auto_renew and status != "terminated"


def _publish_ends(uow: UnitOfWork, rows: list, result: RunResult) -> None:
    ending = [(c, t) for c, t, status in rows if not _renews(t, status)]
    claimed = _claim(uow.session, [(c.id, c.current_version) for c, _t in ending], "expired")
    for contract, terms in ending:
        if contract.id in claimed:
            uow.add_event("crm.contract.expired", _event(contract, terms), subject=contract.id)
            result.expired += 1
    for contract, terms, status in rows:
        if _renews(terms, status):
            _renew(uow, contract, terms, result)


def _renew(uow: UnitOfWork, contract: Contract, terms: ContractTerms, result: RunResult) -> None:
    """Make the next period as a terms change, in a savepoint: a contract that cannot renew now stays for next run."""
    session = uow.session
    contract_id, version = contract.id, terms.version
    start, end = periods.next_period(terms)
    old_terms = {"effective_to": terms.effective_to, "notice_deadline": periods.notice_deadline(terms)}
    try:
        with session.begin_nested():
            if not _claim(session, [(contract_id, version)], "renewed"):
                return
            detail, _made = service.change_terms(uow, contract_id, {"effective_from": start, "effective_to": end},
                                                 precondition=Precondition.of(version), replace=False, actor=ACTOR)
            uow.add_event("crm.contract.renewed", {
                "contract_id": contract_id, "partner_id": detail["partner_id"], "version": version, **old_terms,
                "renewed_version": detail["current_version"], "renewed_until": end, "occurred_at": utcnow(),
            }, subject=contract_id)
    except Problem as exc:
        # Changed meanwhile (412) or no longer renewable: the savepoint took the claim back; the next run decides.
        log.warning("contract %s version %s did not renew: %s", contract_id, version, exc,
                    extra={"event": "partners.renewal_failed", "contract_id": str(contract_id)})
        result.failed += 1
        return
    result.renewed += 1


# -- the job ------------------------------------------------------------------------------------------------

class RenewalJob:
    """The partners worker's background job: `run_once` at the start of every CRM_PARTNERS_RENEWAL_INTERVAL slot.

    Slots are whole intervals since the epoch, so by default the job runs just after midnight UTC, when the day's
    notices fall due, and every worker runs it at about the same time: no leader is needed, the notices' primary
    key lets each through once. A worker that starts mid-slot waits for the next one (`crm partners renewals`
    runs it at once); a missed run only delays notices, since each run publishes everything due and not yet sent.
    """

    def __init__(self, runtime: Runtime, *, retry_after: float = RETRY_AFTER):
        self.runtime = runtime
        self.retry_after = retry_after

    def run(self, stop: threading.Event) -> None:
        """Run at each slot's start until `stop` is set; a failed run is tried again after `retry_after` seconds."""
        interval = self.runtime.settings.partners_renewal_interval
        if interval <= 0:
            stop.wait()  # switched off; the thread stays, so the worker does not take it for dead
            return
        due = next_slot(time.time(), interval)
        while not stop.is_set():
            if stop.wait(max(0.0, due - time.time())):
                return
            try:
                result = run_once(self.runtime)
                log.info("renewal run: %d expiring, %d expired, %d renewed, %d failed", result.expiring,
                         result.expired, result.renewed, result.failed, extra={"event": "partners.renewals"})
                due = next_slot(time.time(), interval)
            except Exception as exc:  # one failed run must not end the job
                level = logging.WARNING if is_database_unavailable(exc) else logging.ERROR
                log.log(level, "renewal run failed; trying again in %.0f s", self.retry_after, exc_info=True,
                        extra={"event": "partners.renewals_failed"})
                due = time.time() + min(self.retry_after, interval)


def next_slot(now: float, interval: float) -> float:
    """The start of the slot after the one `now` (epoch seconds) falls in."""
    return (math.floor(now / interval) + 1) * interval


# -- reads --------------------------------------------------------------------------------------------------

def list_contracts(uow: UnitOfWork, *, expiring_within: int | None = None, partner_id: uuid.UUID | None = None,
                   limit: int, cursor: str | None, sort: str | None = None) -> dict:
    """Contracts with the terms in force, newest first or by `sort`; with `expiring_within` (days) only those
    whose terms end within it and have not ended, soonest end first unless `sort` says otherwise."""
    today = utcnow().date()
    stmt = select(Contract).join(ContractTerms, _IN_FORCE)
    if partner_id is not None:
        stmt = stmt.where(Contract.partner_id == partner_id)
    if expiring_within is not None:
        stmt = stmt.where(ContractTerms.effective_to > today,
                          ContractTerms.effective_to <= today + timedelta(days=expiring_within))
        sort = sort or "effective_to"
    with uow:
        page = paginate(uow.session, stmt, Contract.seq, limit=limit, cursor=cursor, sort=sort,
                                columns=EXPIRING_SORTS)
        return service._with_current_terms(uow.session, page)


def list_own_notices(uow: UnitOfWork, partner_id, *, within: int = DEFAULT_NOTICE_WINDOW, limit: int,
                     cursor: str | None) -> dict:
    """The calling partner's contracts whose notice deadline is at most `within` days ahead and whose terms have
    not ended (those in their notice period too), soonest deadline first."""
    owner = service._owner(partner_id)
    today = utcnow().date()
    horizon = today + timedelta(days=within)
    stmt = (select(Contract).join(ContractTerms, _IN_FORCE)
            .where(Contract.partner_id == owner, ContractTerms.effective_to > today,
                   ContractTerms.effective_to <= horizon + timedelta(days=MAX_NOTICE_DAYS), _DEADLINE <= horizon))
    with uow:
        page = paginate(uow.session, stmt, Contract.seq, limit=limit, cursor=cursor, sort="notice_deadline",
                                columns=EXPIRING_SORTS)
        return service._with_current_terms(uow.session, page)
