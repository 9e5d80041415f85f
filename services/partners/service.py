"""Partner and contract use cases: the only code that changes partners state, each in one unit of work.

The partner-portal functions (`*_own_*`) take the partner id of the caller's identity and find only that
partner's records: another partner's contract is reported exactly like one that does not exist.
"""
from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import and_, func, select, true, tuple_, update

from services.common.db import utcnow
from services.common.pagination import DEFAULT_LIMIT, Keyset, decode_cursor, encode_cursor, paginate
from services.common.etags import Precondition
from services.common.problems import Conflict, NotFound, PreconditionFailed, Unprocessable
from services.common.uow import UnitOfWork

from . import periods, rules
from .models import CONTRACT_SORTS, PARTNER_SORTS, TERM_FIELDS, TERMS_SORTS, Contract, ContractTerms, Partner

PARTNER_FIELDS = ("name", "type", "country")
READ_SCOPE = "partners:read"
# The schemas accept at most this many decimal places, so quantizing to them never rounds.
_DECIMAL_STEPS = {"discount_percent": Decimal("0.01"), "minimum_order_volume": Decimal("0.001")}
# The contract list's sorts by a term of the terms in force.
_BY_TERMS = CONTRACT_SORTS.keys() & TERMS_SORTS.keys()


# -- loading -----------------------------------------------------------------------------------------------

def _partner(session, partner_id: uuid.UUID) -> Partner:
    partner = session.scalar(select(Partner).where(Partner.id == partner_id))
    if partner is None:
        raise NotFound(f"No partner with id {partner_id}.")
    return partner


def _contract(session, contract_id: uuid.UUID, *, owner: uuid.UUID | None) -> Contract:
    """The contract, restricted to `owner`'s contracts when an owner is given."""
    stmt = select(Contract).where(Contract.id == contract_id)
    if owner is not None:
        stmt = stmt.where(Contract.partner_id == owner)
    contract = session.scalar(stmt)
    if contract is None:
        # One message for "does not exist" and "belongs to someone else", so the portal reveals nothing.
        raise NotFound(f"No contract with id {contract_id}.")
    return contract


def _contract_rows(session, contract_id: uuid.UUID, *, owner: uuid.UUID | None, terms_on) -> list:
    """(contract, terms) rows of one contract in one round trip, terms LEFT JOINed on `terms_on`; 404 when none."""
    stmt = (select(Contract, ContractTerms)
            .outerjoin(ContractTerms, and_(ContractTerms.contract_id == Contract.id, terms_on))
            .where(Contract.id == contract_id))
    if owner is not None:
        stmt = stmt.where(Contract.partner_id == owner)
    rows = session.execute(stmt.order_by(ContractTerms.version)).all()
    if not rows:
        # One message for "does not exist" and "belongs to someone else", so the portal reveals nothing.
        raise NotFound(f"No contract with id {contract_id}.")
    return rows


def _contract_detail(session, contract_id: uuid.UUID, *, owner: uuid.UUID | None) -> dict:
    """A contract with the terms in force, in one query."""
    ((contract, terms),) = _contract_rows(session, contract_id, owner=owner,
                                          terms_on=ContractTerms.version == Contract.current_version)
    return _detail(contract, terms)


def _contract_history(session, contract_id: uuid.UUID, *, owner: uuid.UUID | None, limit: int,
                      cursor: str | None, sort: str | None = None) -> dict:
    """One page of a contract's terms versions (newest first or by `sort`) with the contract, in one query; 404 if none.

    Without a sort the cursor is the last version shown: the page holds the versions below it (the unique index
    on contract_id, version serves the query). A cursor past the end gives the contract with no terms rows.
    """
    keyset = None if sort is None else Keyset(ContractTerms.seq, sort=sort, columns=TERMS_SORTS, cursor=cursor)
    if keyset is None:
        after = decode_cursor(cursor)
        terms_on, order_by = true() if after is None else ContractTerms.version < after, (ContractTerms.version.desc(),)
    else:
        terms_on, order_by = true() if keyset.after is None else keyset.after, keyset.order_by
    stmt = (select(Contract, ContractTerms)
            .outerjoin(ContractTerms, and_(ContractTerms.contract_id == Contract.id, terms_on))
            .where(Contract.id == contract_id))
    if owner is not None:
        stmt = stmt.where(Contract.partner_id == owner)
    rows = session.execute(stmt.order_by(*order_by).limit(limit + 1)).all()
    if not rows:
        # One message for "does not exist" and "belongs to someone else", so the portal reveals nothing.
        raise NotFound(f"No contract with id {contract_id}.")
    contract = rows[0][0]
    items = [terms for _contract, terms in rows if terms is not None]
    next_cursor = None
    if len(items) > limit:
        last = items[limit - 1]
        next_cursor = (encode_cursor(last.version) if keyset is None
                       else keyset.next_cursor(last, getattr(last, keyset.key.key)))
    return {"contract_id": contract.id, "current_version": contract.current_version, "items": items[:limit],
            "next_cursor": next_cursor}


def _current_terms(session, contract: Contract) -> ContractTerms:
    return session.scalar(select(ContractTerms).where(ContractTerms.contract_id == contract.id,
                                                      ContractTerms.version == contract.current_version))


def _values(terms: ContractTerms) -> dict:
    return {name: getattr(terms, name) for name in TERM_FIELDS}


def _detail(contract: Contract, terms: ContractTerms) -> dict:
    """The contract's columns, the terms in force and their period's notice deadline and state (periods.py)."""
    return {**{c.key: getattr(contract, c.key) for c in Contract.__table__.columns}, "terms": terms,
            **periods.describe(terms, utcnow().date())}


def _contracts_page(session, partner_id: uuid.UUID, *, limit: int, cursor: str | None, sort: str | None) -> dict:
    """One page of a partner's contracts, newest first or by `sort`, each with the terms in force."""
    stmt = select(Contract).where(Contract.partner_id == partner_id)
    if sort is not None and sort.removeprefix("-") in _BY_TERMS:
        # Every contract has its terms in force, so the inner join drops none.
        stmt = stmt.join(ContractTerms, and_(ContractTerms.contract_id == Contract.id,
                                             ContractTerms.version == Contract.current_version))
    page = paginate(session, stmt, Contract.seq, limit=limit, cursor=cursor, sort=sort, columns=CONTRACT_SORTS)
    return _with_current_terms(session, page)


def _with_current_terms(session, page: dict) -> dict:
    """Replace a page of contracts by their details, loading every current terms row in one query."""
    contracts = page["items"]
    if not contracts:
        return page
    keys = [(c.id, c.current_version) for c in contracts]
    found = {(t.contract_id, t.version): t for t in session.scalars(
        select(ContractTerms).where(tuple_(ContractTerms.contract_id, ContractTerms.version).in_(keys)))}
    return {**page, "items": [_detail(c, found[(c.id, c.current_version)]) for c in contracts]}


def _complete(terms: dict) -> dict:
    """A full set of term values from a complete input, with the optional terms' defaults filled in."""
    values = {name: terms.get(name) for name in TERM_FIELDS}
    values["auto_renew"] = bool(values["auto_renew"])
    values["notice_period_days"] = values["notice_period_days"] or 0
    return values


def _at_column_scale(values: dict) -> dict:
    """Decimals at the scale their columns store, so a fresh version reads the same as a stored one."""
    scaled = dict(values)
    for name, step in _DECIMAL_STEPS.items():
        if scaled.get(name) is not None:
            scaled[name] = Decimal(scaled[name]).quantize(step)
    return scaled


def _check_terms(terms: dict) -> None:
    errors = rules.terms_errors(terms)
    if errors:
        raise Unprocessable("The terms do not hold together: " + ", ".join(sorted(errors)) + ".", errors=errors)


def _not_terminated(partner: Partner) -> None:
    if partner.status in rules.FINAL_STATUSES:
        raise Conflict(f"Partner {partner.id} is {partner.status}; its contracts can no longer change.",
                       current_status=partner.status)


# -- partners ----------------------------------------------------------------------------------------------

def create_partner(uow: UnitOfWork, data: dict) -> Partner:
    """Register a partner and record crm.partner.created."""
    status = data.get("status") or "prospect"
    if status not in rules.INITIAL_STATUSES:
        raise Unprocessable(f"A partner cannot start as {status}.", errors={"status": ["Not an initial status."]})
    with uow:
        partner = Partner(id=uuid.uuid4(), name=data["name"], type=data["type"], status=status,
                          country=data.get("country"))
        uow.session.add(partner)
        uow.session.flush()
        uow.add_event("crm.partner.created", {"partner_id": partner.id, "name": partner.name, "type": partner.type,
                                              "status": partner.status}, subject=partner.id)
        uow.commit()
        return partner


def get_partner(uow: UnitOfWork, partner_id: uuid.UUID) -> Partner:
    """One partner."""
    with uow:
        return _partner(uow.session, partner_id)


def list_partners(uow: UnitOfWork, *, type=None, status=None, q=None, limit: int, cursor: str | None,
                  sort: str | None = None) -> dict:
    """Partners newest first or by `sort`, filtered by type, status and a name fragment, a cursor page at a time."""
    stmt = select(Partner)
    if type:
        stmt = stmt.where(Partner.type == type)
    if status:
        stmt = stmt.where(Partner.status == status)
    if q:
        stmt = stmt.where(func.lower(Partner.name).contains(q.lower(), autoescape=True))
    with uow:
        return paginate(uow.session, stmt, Partner.seq, limit=limit, cursor=cursor, sort=sort, columns=PARTNER_SORTS)


def update_partner(uow: UnitOfWork, partner_id: uuid.UUID, changes: dict) -> Partner:
    """Change a partner's profile or move it along its lifecycle; a terminated partner is final."""
    changes = dict(changes)
    with uow:
        partner = _partner(uow.session, partner_id)
        status = changes.pop("status", None)
        if status is not None:
            rules.check_transition(partner.status, status)
        profile = {k: v for k, v in changes.items() if k in PARTNER_FIELDS and getattr(partner, k) != v}
        if profile and partner.status in rules.FINAL_STATUSES:
            raise Conflict(f"A {partner.status} partner is final; its record cannot change.",
                           current_status=partner.status)
        if not profile and (status is None or status == partner.status):
            return partner
        for name, value in profile.items():
            setattr(partner, name, value)
        if status is not None:
            partner.status = status
        partner.version += 1
        uow.commit()
        return partner


# -- contracts ---------------------------------------------------------------------------------------------

def create_contract(uow: UnitOfWork, partner_id: uuid.UUID, data: dict, *, actor: str | None = None) -> dict:
    """Make a contract with its first version of terms and record crm.contract.created."""
    values = _at_column_scale(_complete(data["terms"]))
    _check_terms(values)
    with uow:
        session = uow.session
        partner = _partner(session, partner_id)
        _not_terminated(partner)
        contract = Contract(id=uuid.uuid4(), partner_id=partner.id, title=data["title"], current_version=1)
        session.add(contract)
        session.flush()
        terms = ContractTerms(contract_id=contract.id, version=1, changed_by=actor, **values)
        session.add(terms)
        session.flush()
        uow.add_event("crm.contract.created", {"contract_id": contract.id, "partner_id": partner.id,
                                               "terms_version": 1}, subject=contract.id)
        uow.commit()
        return _detail(contract, terms)


def get_contract(uow: UnitOfWork, contract_id: uuid.UUID) -> dict:
    """A contract with the terms in force."""
    with uow:
        return _contract_detail(uow.session, contract_id, owner=None)


def list_contracts(uow: UnitOfWork, partner_id: uuid.UUID, *, limit: int, cursor: str | None,
                   sort: str | None = None) -> dict:
    """A partner's contracts newest first or by `sort`, each with the terms in force."""
    with uow:
        _partner(uow.session, partner_id)
        return _contracts_page(uow.session, partner_id, limit=limit, cursor=cursor, sort=sort)


def list_terms(uow: UnitOfWork, contract_id: uuid.UUID, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None,
               sort: str | None = None) -> dict:
    """The versions of a contract's terms, newest first or by `sort`, one cursor page at a time."""
    with uow:
        return _contract_history(uow.session, contract_id, owner=None, limit=limit, cursor=cursor, sort=sort)


def get_terms_version(uow: UnitOfWork, contract_id: uuid.UUID, version: int) -> ContractTerms:
    """One version of a contract's terms, current or past."""
    with uow:
        ((_contract_row, terms),) = _contract_rows(uow.session, contract_id, owner=None,
                                                   terms_on=ContractTerms.version == version)
        if terms is None:
            raise NotFound(f"Contract {contract_id} has no terms version {version}.")
        return terms


def change_terms(uow: UnitOfWork, contract_id: uuid.UUID, terms: dict, *, precondition: Precondition,
                 replace: bool, actor: str | None = None) -> tuple[dict, bool]:
    """Make a new version of a contract's terms; returns (contract detail, whether a version was made).

    `replace` takes `terms` as the complete new set; otherwise they are changes to the version in force.
    The caller must say which version it changes (If-Match): none is 428, a stale one 412. Terms equal
    to the ones in force make no version and no event.
    """
    with uow:
        session = uow.session
        contract = _contract(session, contract_id, owner=None)
        current = contract.current_version
        precondition.check(current, required=True, what="the contract")
        _not_terminated(_partner(session, contract.partner_id))
        in_force = _current_terms(session, contract)
        old = _values(in_force)
        if replace:
            new = _complete(terms)
        else:
            new = {**old, **{name: value for name, value in terms.items() if name in TERM_FIELDS}}
        new = _at_column_scale(new)
        _check_terms(new)
        changed = rules.changed_terms(old, new)
        if not changed:
            return _detail(contract, in_force), False
        # The conditional update is the race-free claim: of two changes to the same version, one wins
        # and the other matches no row and gets 412, on PostgreSQL and SQLite alike.
        claimed = session.execute(
            update(Contract).where(Contract.id == contract.id, Contract.current_version == current)
            .values(current_version=current + 1, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
        if not claimed:
            raise PreconditionFailed("The terms changed meanwhile; fetch the contract again.")
        session.refresh(contract)
        version = ContractTerms(contract_id=contract.id, version=current + 1, changed_by=actor, **new)
        session.add(version)
        session.flush()
        uow.add_event("crm.contract.terms_changed", {
            "contract_id": contract.id, "partner_id": contract.partner_id, "version": version.version,
            "previous_version": current, "changed": changed,
        }, subject=contract.id)
        uow.commit()
        return _detail(contract, version), True


# -- partner portal: only the calling partner's own records ------------------------------------------------

def _owner(partner_id) -> uuid.UUID:
    # The portal must never fall back to "any partner": a missing or malformed id finds nothing.
    if not isinstance(partner_id, uuid.UUID):
        raise NotFound("No partner is bound to this key.")
    return partner_id


def get_own_partner(uow: UnitOfWork, partner_id: uuid.UUID) -> Partner:
    """The calling partner's own record."""
    owner = _owner(partner_id)
    with uow:
        return _partner(uow.session, owner)


def list_own_contracts(uow: UnitOfWork, partner_id: uuid.UUID, *, limit: int, cursor: str | None,
                       sort: str | None = None) -> dict:
    """The calling partner's contracts newest first or by `sort`, each with the terms in force."""
    owner = _owner(partner_id)
    with uow:
        return _contracts_page(uow.session, owner, limit=limit, cursor=cursor, sort=sort)


def get_own_contract(uow: UnitOfWork, partner_id: uuid.UUID, contract_id: uuid.UUID) -> dict:
    """One of the calling partner's contracts with the terms in force; anyone else's is not found."""
    owner = _owner(partner_id)
    with uow:
        return _contract_detail(uow.session, contract_id, owner=owner)


def list_own_terms(uow: UnitOfWork, partner_id: uuid.UUID, contract_id: uuid.UUID, *, limit: int = DEFAULT_LIMIT,
                   cursor: str | None = None, sort: str | None = None) -> dict:
    """The versions of the terms of one of the calling partner's contracts, newest first or by `sort`, paged."""
    owner = _owner(partner_id)
    with uow:
        return _contract_history(uow.session, contract_id, owner=owner, limit=limit, cursor=cursor, sort=sort)
