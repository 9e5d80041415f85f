"""Negotiation: either side proposes term changes, the other accepts, rejects or counters (issue 10).

A proposal is made against the terms version in force and holds only the terms it changes. The thread of a
contract is its proposals in order: a counter-proposal is a new row that names the one it supersedes, which
becomes `countered`. Accepting makes the next terms version through `service.change_terms`, the path every
terms change takes, in the same transaction as the proposal's own move, so the version, the proposal and
their events (crm.contract.terms_changed, crm.proposal.accepted) commit together or not at all.

Who may decide is the side that did not propose. Internal acceptance of a change larger than the configured
limits (CRM_PARTNERS_APPROVAL_LIMITS) also needs `partners:approve`; a partner accepting an internal proposal
needs nothing more, since the internal side already committed to it by proposing.

Every move of a proposal is a conditional UPDATE on `status = 'open'`: of two decisions racing (an accept and
the expiry job, two workers expiring the same row) exactly one matches, on PostgreSQL and SQLite alike.
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from sqlalchemy import select, update

from services.common.db import utcnow
from services.common.etags import Precondition
from services.common.pagination import paginate
from services.common.problems import Conflict, NotFound, Problem, Unprocessable
from services.common.settings import SettingsError
from services.common.uow import UnitOfWork, insert_or_reread

from . import rules, service
from .models import TERM_FIELDS, Contract, Proposal
from .schemas import TermsChangeSchema

log = logging.getLogger("crm.partners.proposals")

OPEN, ACCEPTED, REJECTED, COUNTERED, EXPIRED = "open", "accepted", "rejected", "countered", "expired"
INTERNAL, PARTNER = "internal", "partner"
APPROVE_SCOPE = "partners:approve"
# Terms whose change is a number, so a limit on its size means something.
NUMERIC_TERMS = ("payment_terms_days", "discount_percent", "delivery_lead_time_days", "minimum_order_volume",
                 "notice_period_days")
DEFAULT_APPROVAL_LIMITS = {"payment_terms_days": Decimal(15), "discount_percent": Decimal(2)}
APPROVAL_LIMITS_VARIABLE = "CRM_PARTNERS_APPROVAL_LIMITS"
EXPIRY_BATCH = 100  # proposals the expiry job closes per transaction
EXPIRY_EVERY = 60.0  # seconds between the expiry job's looks


@dataclass(frozen=True)
class Party:
    """Who acts on a proposal: the internal side (any partner's contract) or one partner (its own only)."""

    side: str
    key: str | None
    partner_id: uuid.UUID | None = None
    may_approve: bool = False

    @property
    def owner(self) -> uuid.UUID | None:
        """The partner whose records alone this party may see; None for the internal side."""
        if self.side == INTERNAL:
            return None
        # The portal must never fall back to "any partner": a party without a partner finds nothing.
        if not isinstance(self.partner_id, uuid.UUID):
            raise NotFound("No partner is bound to this key.")
        return self.partner_id


# -- settings ----------------------------------------------------------------------------------------------

def approval_limits_from_settings(settings) -> dict[str, Decimal]:
    """Term -> the largest change internal acceptance makes without `partners:approve`; SettingsError if malformed."""
    raw = (settings.partners_approval_limits or "").strip()
    if not raw:
        return dict(DEFAULT_APPROVAL_LIMITS)
    try:
        document = json.loads(raw, parse_float=Decimal)
    except ValueError as exc:
        raise SettingsError(APPROVAL_LIMITS_VARIABLE, f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise SettingsError(APPROVAL_LIMITS_VARIABLE, "must be a JSON object of term names to limits")
    limits = {}
    for name, value in document.items():
        if name not in NUMERIC_TERMS:
            raise SettingsError(APPROVAL_LIMITS_VARIABLE,
                                f"{name!r} is not a numeric term; use {', '.join(NUMERIC_TERMS)}")
        try:
            limit = Decimal(str(value)) if not isinstance(value, bool) else None
        except InvalidOperation:
            limit = None
        if limit is None or not limit.is_finite() or limit < 0:
            raise SettingsError(APPROVAL_LIMITS_VARIABLE, f"{name}: expected a number of 0 or more, got {value!r}")
        limits[name] = limit
    return limits


# -- reading -----------------------------------------------------------------------------------------------

def shown_status(proposal: Proposal, now: datetime | None = None) -> str:
    """The status a reader sees: an open proposal past its expiry is expired, even before the job closes it."""
    if proposal.status == OPEN and proposal.expires_at <= (now or utcnow()):
        return EXPIRED
    return proposal.status


def list_proposals(uow: UnitOfWork, contract_id: uuid.UUID, *, party: Party, limit: int,
                   cursor: str | None) -> dict:
    """A contract's proposals, newest first, a cursor page at a time."""
    owner = party.owner
    with uow:
        service._contract(uow.session, contract_id, owner=owner)
        stmt = select(Proposal).where(Proposal.contract_id == contract_id)
        return paginate(uow.session, stmt, Proposal.seq, limit=limit, cursor=cursor)


def get_proposal(uow: UnitOfWork, contract_id: uuid.UUID, proposal_id: uuid.UUID, *, party: Party) -> Proposal:
    """One proposal of a contract."""
    owner = party.owner
    with uow:
        return _proposal(uow.session, contract_id, proposal_id, owner=owner)


def _proposal(session, contract_id: uuid.UUID, proposal_id: uuid.UUID, *, owner: uuid.UUID | None) -> Proposal:
    stmt = select(Proposal).where(Proposal.id == proposal_id, Proposal.contract_id == contract_id)
    if owner is not None:
        stmt = stmt.where(Proposal.partner_id == owner)
    proposal = session.scalar(stmt)
    if proposal is None:
        # One message for "does not exist" and "belongs to someone else", so the portal reveals nothing.
        raise NotFound(f"Contract {contract_id} has no proposal {proposal_id}.")
    return proposal


def _open_proposal(session, contract_id: uuid.UUID) -> Proposal | None:
    return session.scalar(select(Proposal).where(Proposal.contract_id == contract_id, Proposal.status == OPEN))


# -- proposing ---------------------------------------------------------------------------------------------

def submit_proposal(uow: UnitOfWork, contract_id: uuid.UUID, data: dict, *, party: Party, default_days: int,
                    approval_limits: dict[str, Decimal] | None = None, now: datetime | None = None) -> Proposal:
    """Propose changes to the terms in force and record crm.proposal.submitted; one open proposal per contract."""
    owner, now = party.owner, now or utcnow()
    with uow:
        session = uow.session
        contract = service._contract(session, contract_id, owner=owner)
        service._not_terminated(service._partner(session, contract.partner_id))
        proposal = _new_proposal(session, contract, data, party=party, default_days=default_days, now=now)
        current = _open_proposal(session, contract.id)
        if current is not None:
            if current.expires_at > now:
                raise _one_open(current)
            _expire(uow, current, now)  # expired but not closed yet: it closes itself now
        _check_proposed_approval(session, contract, proposal, party, approval_limits)
        clash = insert_or_reread(session, proposal, reread=lambda: _open_proposal(session, contract.id))
        if clash is not None:  # another proposal was submitted meanwhile
            raise _one_open(clash)
        _record(uow, "crm.proposal.submitted", proposal, now)
        uow.commit()
        return proposal


def counter_proposal(uow: UnitOfWork, contract_id: uuid.UUID, proposal_id: uuid.UUID, data: dict, *,
                     party: Party, default_days: int, approval_limits: dict[str, Decimal] | None = None,
                     now: datetime | None = None) -> Proposal:
    """Answer a proposal with another: it becomes countered (crm.proposal.countered), the new one is submitted."""
    owner, now = party.owner, now or utcnow()
    with uow:
        session = uow.session
        old = _decidable(session, contract_id, proposal_id, party=party, now=now)
        contract = service._contract(session, contract_id, owner=owner)
        service._not_terminated(service._partner(session, contract.partner_id))
        proposal = _new_proposal(session, contract, data, party=party, default_days=default_days, now=now)
        _check_proposed_approval(session, contract, proposal, party, approval_limits)
        proposal.supersedes_id = old.id
        _move(session, old, COUNTERED, party=party, now=now)  # frees the one open slot for the counter
        session.add(proposal)
        session.flush()
        _record(uow, "crm.proposal.countered", old, now, counter_proposal_id=proposal.id)
        _record(uow, "crm.proposal.submitted", proposal, now)
        uow.commit()
        return proposal


def _new_proposal(session, contract: Contract, data: dict, *, party: Party, default_days: int,
                  now: datetime) -> Proposal:
    """A proposal of the terms in `data["changes"]` that differ from the terms in force; 422 when none do."""
    old = service._values(service._current_terms(session, contract))
    requested = {name: value for name, value in data["changes"].items() if name in TERM_FIELDS}
    new = service._at_column_scale({**old, **requested})
    errors = rules.terms_errors(new)
    if errors:
        raise Unprocessable("The proposed terms do not hold together with the terms in force: "
                            + ", ".join(sorted(errors)) + ".", errors={"changes": errors})
    changed = rules.changed_terms(old, new)
    if not changed:
        raise Unprocessable("The proposal changes nothing: every term named is already in force.",
                            errors={"changes": ["Propose at least one term that differs from the terms in force."]})
    return Proposal(
        id=uuid.uuid4(), contract_id=contract.id, partner_id=contract.partner_id,
        base_version=contract.current_version, changes=_json_form({name: new[name] for name in changed}),
        message=data.get("message"), expires_at=_expiry(data, default_days, now), status=OPEN,
        proposed_by=party.side, proposed_by_key=party.key, created_at=now, updated_at=now, version=1)


def _expiry(data: dict, default_days: int, now: datetime) -> datetime:
    if data.get("expires_at") is not None and data.get("expires_in_days") is not None:
        raise Unprocessable("Give expires_at or expires_in_days, not both.",
                            errors={"expires_at": ["Not together with expires_in_days."]})
    if data.get("expires_at") is not None:
        if data["expires_at"] <= now:
            raise Unprocessable("A proposal must expire in the future.",
                                errors={"expires_at": ["Must be in the future."]})
        return data["expires_at"]
    return now + timedelta(days=data.get("expires_in_days") or default_days)


def _json_form(changes: dict) -> dict:
    """Term values as the API writes them (decimals and dates as strings): what is stored and published."""
    return TermsChangeSchema().dump(changes)


def _typed(changes: dict) -> dict:
    """Stored changes back as Python values (Decimal, date), for the terms change."""
    return {name: value for name, value in TermsChangeSchema().load(changes).items()}


def _one_open(current: Proposal) -> Conflict:
    return Conflict(f"Contract {current.contract_id} already has an open proposal, {current.id}; accept, reject or "
                    "counter it first.", open_proposal_id=str(current.id))


# -- deciding ----------------------------------------------------------------------------------------------

def accept_proposal(uow: UnitOfWork, contract_id: uuid.UUID, proposal_id: uuid.UUID, *, party: Party,
                    precondition: Precondition, approval_limits: dict[str, Decimal],
                    now: datetime | None = None) -> tuple[Proposal, dict]:
    """Accept a proposal: the next terms version, made as any terms change is; returns (proposal, contract detail).

    If-Match names the contract's ETag (428/412 as for a terms change); a proposal made against an older
    version than the one in force is 409 with the current version.
    """
    owner, now = party.owner, now or utcnow()
    with uow:
        session = uow.session
        proposal = _decidable(session, contract_id, proposal_id, party=party, now=now)
        contract = service._contract(session, contract_id, owner=owner)
        precondition.check(contract.current_version, required=True, what="the contract")
        if proposal.base_version != contract.current_version:
            raise Conflict(f"Proposal {proposal.id} was made against terms version {proposal.base_version}; version "
                           f"{contract.current_version} is in force now. Counter it with changes to the current terms.",
                           current_version=contract.current_version, base_version=proposal.base_version)
        changes = _typed(proposal.changes)
        _check_approval(party, service._values(service._current_terms(session, contract)), changes, approval_limits,
                        doing="Accepting")
        _move(session, proposal, ACCEPTED, party=party, now=now)
        detail, _made = service.change_terms(uow, contract_id, changes, precondition=precondition, replace=False,
                                             actor=party.key)
        proposal.terms_version = detail["current_version"]
        session.flush()
        _record(uow, "crm.proposal.accepted", proposal, now, terms_version=proposal.terms_version)
        uow.commit()
        return proposal, detail


def reject_proposal(uow: UnitOfWork, contract_id: uuid.UUID, proposal_id: uuid.UUID, *, reason: str,
                    party: Party, now: datetime | None = None) -> Proposal:
    """Reject a proposal with a reason and record crm.proposal.rejected."""
    now = now or utcnow()
    with uow:
        session = uow.session
        proposal = _decidable(session, contract_id, proposal_id, party=party, now=now)
        proposal.reason = reason
        _move(session, proposal, REJECTED, party=party, now=now)
        _record(uow, "crm.proposal.rejected", proposal, now, reason=reason)
        uow.commit()
        return proposal


def _decidable(session, contract_id, proposal_id, *, party: Party, now: datetime) -> Proposal:
    """The proposal, if it is open, unexpired and `party` is the side that did not make it."""
    proposal = _proposal(session, contract_id, proposal_id, owner=party.owner)
    status = shown_status(proposal, now)
    if status != OPEN:
        raise Conflict(f"Proposal {proposal.id} is {status}; only an open proposal can be decided.",
                       proposal_status=status)
    if proposal.proposed_by == party.side:
        other = PARTNER if party.side == INTERNAL else "internal side"
        raise Problem(f"The {party.side} side made proposal {proposal.id}; only the {other} may accept, reject or "
                      "counter it.", status=403, slug="forbidden", title="Forbidden", proposed_by=proposal.proposed_by)
    return proposal


def _check_proposed_approval(session, contract: Contract, proposal: Proposal, party: Party,
                             limits: dict[str, Decimal] | None) -> None:
    _check_approval(party, service._values(service._current_terms(session, contract)), _typed(proposal.changes),
                    limits or {}, doing="Proposing")


def _check_approval(party: Party, old: dict, changes: dict, limits: dict[str, Decimal], *, doing: str) -> None:
    """403 when an internal caller without partners:approve moves a term by more than its approval limit.

    Checked when an internal side proposes or counters as well as when it accepts: otherwise a change beyond
    the limits could be proposed internally and accepted by the partner, and never be approved by anyone.
    """
    if party.side != INTERNAL or party.may_approve:
        return
    over = _over_limits(old, changes, limits)
    if over:
        raise Problem(f"{doing} changes to {', '.join(over)} beyond the approval limit needs the {APPROVE_SCOPE} "
                      "scope.", status=403, slug="forbidden", title="Forbidden", required_scope=APPROVE_SCOPE,
                      over_limit=over)


def _over_limits(old: dict, changes: dict, limits: dict[str, Decimal]) -> list[str]:
    """The terms whose change from the terms in force is larger than their limit, in the canonical order."""
    return [name for name in TERM_FIELDS
            if name in limits and name in changes and changes[name] is not None and old.get(name) is not None
            and abs(Decimal(changes[name]) - Decimal(old[name])) > limits[name]]


def _move(session, proposal: Proposal, status: str, *, party: Party | None, now: datetime) -> None:
    """Move an open proposal to `status`; 409 when a concurrent decision moved it first."""
    moved = session.execute(
        update(Proposal).where(Proposal.id == proposal.id, Proposal.status == OPEN)
        .values(status=status, decided_by_key=party.key if party else None, decided_at=now, updated_at=now,
                version=Proposal.version + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not moved:
        raise Conflict(f"Proposal {proposal.id} was decided meanwhile; fetch it again.")
    session.refresh(proposal)


def _record(uow: UnitOfWork, event_type: str, proposal: Proposal, now: datetime, **extra) -> None:
    uow.add_event(event_type, {
        "proposal_id": proposal.id, "contract_id": proposal.contract_id, "partner_id": proposal.partner_id,
        "base_version": proposal.base_version, "proposed_by": proposal.proposed_by, "occurred_at": now,
        "changes": proposal.changes, **extra,
    }, subject=proposal.contract_id)


# -- expiry ------------------------------------------------------------------------------------------------

def _expire(uow: UnitOfWork, proposal: Proposal, now: datetime) -> bool:
    """Close an open proposal past its expiry and record crm.proposal.expired; False when another did it first."""
    moved = uow.session.execute(
        update(Proposal).where(Proposal.id == proposal.id, Proposal.status == OPEN)
        .values(status=EXPIRED, decided_at=now, updated_at=now, version=Proposal.version + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved:  # zero: another worker or request closed it first, and recorded the event
        uow.session.refresh(proposal)
        _record(uow, "crm.proposal.expired", proposal, now)
    return bool(moved)


def expire_due(runtime, *, now: datetime | None = None, batch: int = EXPIRY_BATCH) -> int:
    """Close open proposals past their expiry, a batch per transaction; how many this call closed.

    Safe with any number of workers: on PostgreSQL each skips the rows another has locked, and the
    conditional UPDATE lets only one transaction close (and announce) a proposal anyway.
    """
    closed = 0
    while True:
        at = now or utcnow()
        with runtime.uow() as uow:
            due = list(uow.session.scalars(
                select(Proposal).where(Proposal.status == OPEN, Proposal.expires_at <= at)
                .order_by(Proposal.expires_at, Proposal.seq).limit(batch).with_for_update(skip_locked=True)))
            for proposal in due:
                closed += _expire(uow, proposal, at)
            uow.commit()
        if len(due) < batch:
            return closed


class ProposalExpiryJob:
    """The partners worker's job: every `every` seconds, close the proposals whose expiry has passed."""

    def __init__(self, runtime, *, every: float = EXPIRY_EVERY):
        self.runtime = runtime
        self.every = every

    def run(self, stop: threading.Event) -> None:
        """Close due proposals until `stop` is set; a failure (the database away) waits for the next round."""
        while not stop.is_set():
            try:
                closed = expire_due(self.runtime)
                if closed:
                    log.info("closed %d expired proposals", closed, extra={"event": "proposals.expired"})
            except Exception:  # noqa: BLE001 - the next round tries again
                log.warning("closing expired proposals failed; trying again shortly", exc_info=True)
            stop.wait(self.every)
