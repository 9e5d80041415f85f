"""Loyalty use cases: the only code that changes loyalty state, each in one unit of work.

Points live in an append-only ledger; a member's balance is the sum of its entries. Every ledger write
first locks the member's row (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite begins every transaction
IMMEDIATE, which serialises writers already), so the balance it checks is the balance it changes.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timezone

from sqlalchemy import bindparam, func, select, true
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.common.db import utcnow
from services.common.pagination import paginate
from services.common.problems import Conflict, Moved, NotFound, Unprocessable
from services.common.uow import UnitOfWork, insert_or_reread

from . import freezes
from .margins import purchase_margin
from .models import (
    ADJUST,
    EARN,
    MEMBER_SORTS,
    PROGRAM_SORTS,
    REDEEM,
    RETURN,
    REVERSE,
    TRANSACTION_SORTS,
    LedgerEntry,
    Member,
    Program,
    Purchase,
)
from .policies import award_points, factor_rows

READ_SCOPE = "loyalty:read"
# Balance corrections, reversals and program changes: granted by name, `loyalty:*` does not include it.
ADMIN_SCOPE = "loyalty:admin"

# --- the ledger's arithmetic (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerTotals:
    """What a member's ledger adds up to."""

    balance: int = 0
    lifetime_points: int = 0


def derive_totals(sums: Iterable[tuple[str, str | None, int]]) -> LedgerTotals:
    """Totals from (kind, reversed_kind, sum of points) rows.

    The balance is every entry added up. Lifetime points are what purchases earned, net of the earns that
    were reversed and of what returns took back; redemptions, adjustments and their reversals do not change them.
    """
    balance = lifetime = 0
    for kind, reversed_kind, points in sums:
        points = int(points or 0)
        balance += points
        if counts_for_lifetime(kind, reversed_kind):
            lifetime += points
    return LedgerTotals(balance, lifetime)


def counts_for_lifetime(kind: str, reversed_kind: str | None) -> bool:
    """Whether an entry of `kind` (a reversal: of `reversed_kind`) moves the lifetime points."""
    return kind in _EARNING or (kind == REVERSE and reversed_kind in _EARNING)


_EARNING = (EARN, RETURN)  # a return takes back what its purchase earned


def _sums(session, member_ids):
    return session.execute(
        select(LedgerEntry.member_id, LedgerEntry.kind, LedgerEntry.reversed_kind, func.sum(LedgerEntry.points))
        .where(LedgerEntry.member_id.in_(member_ids))
        .group_by(LedgerEntry.member_id, LedgerEntry.kind, LedgerEntry.reversed_kind)
    ).all()


def _totals(session, member_id: uuid.UUID) -> LedgerTotals:
    return derive_totals((kind, rk, total) for _m, kind, rk, total in _sums(session, [member_id]))


def _totals_by_member(session, member_ids: list[uuid.UUID]) -> dict[uuid.UUID, LedgerTotals]:
    grouped: dict[uuid.UUID, list] = {m: [] for m in member_ids}
    for member_id, kind, rk, total in _sums(session, member_ids) if member_ids else ():
        grouped[member_id].append((kind, rk, total))
    return {m: derive_totals(rows) for m, rows in grouped.items()}


# --- lookups --------------------------------------------------------------------------------------------------

def _program(session, program_id: uuid.UUID | None, *, field: str | None = None) -> Program:
    """The program by id (the default one for None); unknown -> 404, or 422 naming `field` for a body value."""
    if program_id is None:
        program = session.scalar(select(Program).where(Program.is_default.is_(True)).order_by(Program.seq).limit(1))
        if program is None:
            raise NotFound("There is no default loyalty program; run the loyalty migrations.")
        return program
    program = session.scalar(select(Program).where(Program.id == program_id))
    if program is None:
        if field:
            raise Unprocessable(f"No loyalty program with id {program_id}.", errors={field: ["No program with this id."]})
        raise NotFound(f"No loyalty program with id {program_id}.")
    return program


def _program_by_code(session, code: str) -> Program | None:
    return session.scalar(select(Program).where(Program.code == code))


def _member(session, member_id: uuid.UUID, *, lock: bool = False) -> Member:
    stmt = select(Member).where(Member.id == member_id)
    if lock:
        # Rendered on PostgreSQL only; concurrent ledger writers for this member queue up here.
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    member = session.scalar(stmt)
    if member is None:
        raise NotFound(f"No loyalty member with id {member_id}.")
    if lock and member.merged_into_id is not None:
        # Closed by a contact merge (merges.py): its points and purchases are on the other membership now.
        raise Moved(f"Member {member_id} was combined into member {member.merged_into_id} when its contact was "
                    "merged.", old_id=member_id, new_id=member.merged_into_id, merged_into_id=str(member.merged_into_id)
                    ).for_readers(READ_SCOPE, otherwise=f"Member {member_id} was closed when its contact was merged.")
    return member


def _membership(session, program_id: uuid.UUID, contact_id: uuid.UUID) -> Member | None:
    return session.scalar(select(Member).where(Member.program_id == program_id, Member.contact_id == contact_id))


def _member_view(member: Member, totals: LedgerTotals) -> dict:
    return {"id": member.id, "program_id": member.program_id, "contact_id": member.contact_id,
            "balance": totals.balance, "lifetime_points": totals.lifetime_points, "tier": member.tier,
            "enrolled_via": member.enrolled_via, "enrolled_at": member.enrolled_at,
            "merged_into_id": member.merged_into_id, "status": "frozen" if member.frozen_at else "active",
            "frozen_at": member.frozen_at, "frozen_reason": member.frozen_reason}


# --- programs -------------------------------------------------------------------------------------------------

def list_programs(uow: UnitOfWork, *, limit: int, cursor: str | None, sort: str | None = None) -> dict:
    """Programs, newest first or by `sort`, one cursor page at a time."""
    with uow:
        return paginate(uow.session, select(Program), Program.seq, limit=limit, cursor=cursor, sort=sort,
                        columns=PROGRAM_SORTS)


def get_program(uow: UnitOfWork, program_id: uuid.UUID) -> Program:
    """One program."""
    with uow:
        return _program(uow.session, program_id)


def create_program(uow: UnitOfWork, data: dict) -> Program:
    """Start a program; its code is unique (409 when taken)."""
    with uow:
        session = uow.session
        program = Program(id=uuid.uuid4(), is_default=False, **data)
        if insert_or_reread(session, program, reread=lambda: _program_by_code(session, data["code"])) is not None:
            raise Conflict(f"A program with code {data['code']!r} exists already.")
        uow.commit()
        return program


def update_program(uow: UnitOfWork, program_id: uuid.UUID, changes: dict) -> Program:
    """Rename a program, change its rate (future purchases only) or switch auto-enrolment."""
    with uow:
        program = _program(uow.session, program_id)
        for name, value in changes.items():
            setattr(program, name, value)
        uow.commit()
        return program


# --- members --------------------------------------------------------------------------------------------------

def _enrol(uow: UnitOfWork, program: Program, contact_id: uuid.UUID, via: str, **cause) -> tuple[Member, bool]:
    """The contact's membership of `program`, created (with crm.member.enrolled) when missing.

    A terminated contact's new membership is frozen from the start, and announced so (freezes.py).
    """
    session = uow.session
    existing = _membership(session, program.id, contact_id)
    if existing is not None:
        return existing, False
    frozen = freezes.frozen_contact(session, contact_id)
    member = Member(id=uuid.uuid4(), program_id=program.id, contact_id=contact_id, enrolled_via=via)
    # A concurrent enrolment of the same contact may win; theirs is then the membership.
    existing = insert_or_reread(session, member, reread=lambda: _membership(session, program.id, contact_id))
    if existing is not None:
        return existing, False
    freezes.loaded_as(member, frozen)
    uow.add_event("crm.member.enrolled", {"member_id": member.id, "contact_id": contact_id,
                                          "program_id": program.id}, subject=member.id, **cause)
    if frozen is not None:
        freezes.announce(uow, member.id, contact_id, program.id, frozen, **cause)
    return member, True


def _memberships(session, program_id: uuid.UUID, contact_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Member]:
    """The memberships of `program_id` these contacts hold, by contact id, in one round trip."""
    wanted = set(contact_ids)
    if not wanted:
        return {}
    stmt = select(Member).where(Member.program_id == program_id, Member.contact_id.in_(wanted))
    return {member.contact_id: member for member in session.scalars(stmt)}


# Executed with a list of rows (compiled once); a clash with a concurrent enrolment skips the row.
_ENROL_NEW = (pg_insert(Member).on_conflict_do_nothing(index_elements=["program_id", "contact_id"])
              .returning(Member))


def enrol_member(uow: UnitOfWork, contact_id: uuid.UUID, *, program_id: uuid.UUID | None = None) -> dict:
    """Enrol a contact in a program (the default one unless named); a second enrolment is a 409."""
    with uow:
        program = _program(uow.session, program_id, field="program_id")
        member, created = _enrol(uow, program, contact_id, "api")
        if not created:
            raise Conflict(f"Contact {contact_id} is already a member of program {program.code}.",
                           member_id=str(member.id)
                           ).for_readers(READ_SCOPE, otherwise="The contact is already a member of this program.")
        uow.commit()
        return _member_view(member, LedgerTotals())


def enrol_contact_automatically(uow: UnitOfWork, contact_id: uuid.UUID) -> Member | None:
    """Enrol a new contact in the default program when it says so; an existing membership is left alone."""
    [member] = enrol_contacts_automatically(uow, [contact_id])
    return member


def enrol_contacts_automatically(uow: UnitOfWork, contact_ids: Sequence[uuid.UUID], *,
                                 causes: Sequence[Mapping] | None = None) -> list[Member | None]:
    """enrol_contact_automatically for many contacts at once; one membership (or None) per contact id.

    `causes[i]` (add_event keywords) are the correlation and causation ids of an enrolment of contact_ids[i].
    """
    with uow:
        session = uow.session
        program = _program(session, None)
        if not program.auto_enrol:
            return [None] * len(contact_ids)
        causes_of = {}
        for index, contact_id in enumerate(contact_ids):
            causes_of.setdefault(contact_id, causes[index] if causes else {})
        if session.get_bind().dialect.name == "postgresql":
            # No look-up first: the insert skips the contacts already enrolled (ON CONFLICT), and only those are
            # read after it, so enrolling a new contact costs one statement fewer.
            freezes.lock_contacts(session, causes_of)
            frozen = freezes.frozen_contacts(session, causes_of)
            rows = [{"id": uuid.uuid4(), "program_id": program.id, "contact_id": contact_id, "enrolled_via": "event",
                     "enrolled_at": utcnow()} for contact_id in sorted(causes_of)]
            enrolled = {member.contact_id: member for member in session.scalars(_ENROL_NEW, rows)}
            # Enrolled before, or by a concurrent enrolment that won: theirs is the membership, announced by them.
            members = _memberships(session, program.id, causes_of.keys() - enrolled.keys())
            members.update(enrolled)
            for contact_id, member in enrolled.items():
                freezes.loaded_as(member, frozen.get(contact_id))
                uow.add_event("crm.member.enrolled", {"member_id": member.id, "contact_id": contact_id,
                                                      "program_id": program.id}, subject=member.id,
                              **causes_of[contact_id])
                if contact_id in frozen:
                    freezes.announce(uow, member.id, contact_id, program.id, frozen[contact_id],
                                     **causes_of[contact_id])
        else:
            members = _memberships(session, program.id, contact_ids)
            for contact_id, cause in causes_of.items():
                if contact_id not in members:
                    members[contact_id], _created = _enrol(uow, program, contact_id, "event", **cause)
        uow.commit()
        return [members.get(contact_id) for contact_id in contact_ids]


# One round trip, built once: the member LEFT JOINed to its ledger sums per (kind, reversed kind).
_LEDGER_SUMS = (select(LedgerEntry.kind, LedgerEntry.reversed_kind, func.sum(LedgerEntry.points).label("points"))
                .where(LedgerEntry.member_id == bindparam("member_id"))
                .group_by(LedgerEntry.kind, LedgerEntry.reversed_kind).subquery())
_MEMBER_WITH_SUMS = (select(Member, _LEDGER_SUMS.c.kind, _LEDGER_SUMS.c.reversed_kind, _LEDGER_SUMS.c.points)
                     .outerjoin(_LEDGER_SUMS, true()).where(Member.id == bindparam("member_id")))


def get_member(uow: UnitOfWork, member_id: uuid.UUID) -> dict:
    """A member with its balance and lifetime points, derived from the ledger."""
    with uow:
        rows = uow.session.execute(_MEMBER_WITH_SUMS, {"member_id": member_id}).all()
        if not rows:
            raise NotFound(f"No loyalty member with id {member_id}.")
        totals = derive_totals((kind, rk, points) for _m, kind, rk, points in rows if kind is not None)
        return _member_view(rows[0][0], totals)


def list_members(uow: UnitOfWork, *, contact_id=None, program_id=None, limit: int, cursor: str | None,
                 sort: str | None = None) -> dict:
    """Members newest first or by `sort`, filtered by contact or program, each with its balance."""
    stmt = select(Member)
    if contact_id is not None:
        stmt = stmt.where(Member.contact_id == contact_id)
    if program_id is not None:
        stmt = stmt.where(Member.program_id == program_id)
    with uow:
        page = paginate(uow.session, stmt, Member.seq, limit=limit, cursor=cursor, sort=sort, columns=MEMBER_SORTS)
        totals = _totals_by_member(uow.session, [m.id for m in page["items"]])
        return {"items": [_member_view(m, totals[m.id]) for m in page["items"]], "next_cursor": page["next_cursor"]}


def list_transactions(uow: UnitOfWork, member_id: uuid.UUID, *, kind=None, limit: int, cursor: str | None,
                      sort: str | None = None) -> dict:
    """A member's ledger entries, newest first or by `sort`, with the factors behind each earn."""
    with uow:
        _member(uow.session, member_id)
        stmt = select(LedgerEntry).where(LedgerEntry.member_id == member_id)
        if kind:
            stmt = stmt.where(LedgerEntry.kind == kind)
        return paginate(uow.session, stmt, LedgerEntry.seq, limit=limit, cursor=cursor, sort=sort,
                        columns=TRANSACTION_SORTS)


# --- the ledger -----------------------------------------------------------------------------------------------

def _append(uow: UnitOfWork, member: Member, kind: str, points: int, *, before: LedgerTotals | None = None,
            **fields) -> tuple[LedgerEntry, LedgerTotals]:
    """Add one entry for a member whose row this transaction has locked; the balance may never go below 0.

    `before` is the member's totals when the caller has just read them (under the same lock).
    """
    before = before or _totals(uow.session, member.id)
    balance = before.balance + points
    if balance < 0:
        raise Conflict(f"The member has {before.balance} points; {-points} are needed.",
                       slug="insufficient-points", title="Insufficient points", balance=before.balance,
                       requested=-points
                       ).for_readers(READ_SCOPE, otherwise=f"The member's balance is short of the {-points} points needed.")
    entry = LedgerEntry(id=uuid.uuid4(), member_id=member.id, kind=kind, points=points, balance_after=balance, **fields)
    uow.session.add(entry)
    uow.session.flush()
    lifetime = before.lifetime_points + (points if counts_for_lifetime(kind, fields.get("reversed_kind")) else 0)
    return entry, LedgerTotals(balance, lifetime)


def redeem_points(uow: UnitOfWork, member_id: uuid.UUID, points: int, *, reason: str | None = None) -> LedgerEntry:
    """Spend points; 409 when the balance is short, so a balance never goes negative, or the membership frozen."""
    with uow:
        member = _member(uow.session, member_id, lock=True)
        freezes.refuse_when_frozen(member, "redeemed")
        entry, totals = _append(uow, member, REDEEM, -points, reason=reason)
        uow.add_event("crm.points.redeemed", {
            "transaction_id": entry.id, "member_id": member.id, "contact_id": member.contact_id, "points": points,
            "balance": totals.balance, "program_id": member.program_id, "reason": reason}, subject=member.id)
        uow.commit()
        return entry


def adjust_points(uow: UnitOfWork, member_id: uuid.UUID, points: int, *, reason: str) -> LedgerEntry:
    """Correct a balance by hand (goodwill, migration); a deduction may not overdraw it."""
    with uow:
        member = _member(uow.session, member_id, lock=True)
        entry, totals = _append(uow, member, ADJUST, points, reason=reason)
        _record_adjusted(uow, member, entry, totals)
        uow.commit()
        return entry


def reverse_entry(uow: UnitOfWork, member_id: uuid.UUID, entry_id: uuid.UUID, *, reason: str) -> LedgerEntry:
    """Undo one earlier entry with an opposite one; each entry can be reversed once, reversals and returns cannot.

    An earn whose purchase had returns is reversed by what the returns did not take back already.
    """
    with uow:
        session = uow.session
        member = _member(session, member_id, lock=True)
        original = session.scalar(select(LedgerEntry).where(LedgerEntry.id == entry_id,
                                                            LedgerEntry.member_id == member.id))
        if original is None:
            raise NotFound(f"Member {member_id} has no transaction {entry_id}.")
        if original.kind in (REVERSE, RETURN):
            raise Conflict(f"A {original.kind} entry cannot be reversed; adjust the balance instead.")
        done = session.scalar(select(LedgerEntry.id).where(LedgerEntry.reverses_id == original.id))
        if done is not None:
            raise Conflict(f"Transaction {entry_id} was already reversed.", reversal_id=str(done)
                           ).for_readers(READ_SCOPE, otherwise=f"Transaction {entry_id} was already reversed.")
        points = original.points
        if original.kind == EARN:
            # Returns took some of these points back already (returns.py): only what the member still holds goes.
            points -= session.scalar(select(Purchase.points_reclaimed).where(Purchase.id == original.purchase_id)) or 0
        entry, totals = _append(uow, member, REVERSE, -points, reason=reason, reverses_id=original.id,
                                reversed_kind=original.kind, purchase_id=original.purchase_id)
        _record_adjusted(uow, member, entry, totals)
        uow.commit()
        return entry


def _record_adjusted(uow: UnitOfWork, member: Member, entry: LedgerEntry, totals: LedgerTotals) -> None:
    uow.add_event("crm.points.adjusted", {
        "transaction_id": entry.id, "member_id": member.id, "contact_id": member.contact_id,
        "program_id": member.program_id, "kind": entry.kind, "points": entry.points, "balance": totals.balance,
        "lifetime_points": totals.lifetime_points, "reverses_id": entry.reverses_id, "reason": entry.reason,
    }, subject=member.id)


# --- purchases ------------------------------------------------------------------------------------------------

def _buyer(uow: UnitOfWork, data: dict) -> tuple[Member, Program]:
    """The member a purchase belongs to, enrolling the contact when the program enrols automatically."""
    session = uow.session
    if data.get("member_id") is not None:
        member = session.scalar(select(Member).where(Member.id == data["member_id"]))
        if member is None:
            raise Unprocessable("The purchase names an unknown member.", errors={"member_id": ["No member with this id."]})
        if data.get("contact_id") is not None and data["contact_id"] != member.contact_id:
            raise Unprocessable("The member and the contact do not match.",
                                errors={"contact_id": ["This contact is not the given member's contact."]})
        if data.get("program_id") is not None and data["program_id"] != member.program_id:
            raise Unprocessable("The member belongs to another program.",
                                errors={"program_id": ["The member belongs to another program."]})
        return member, _program(session, member.program_id)
    program = _program(session, data.get("program_id"), field="program_id")
    member = _membership(session, program.id, data["contact_id"])
    if member is None:
        if not program.auto_enrol:
            raise Unprocessable("The contact is not a member of the program.", errors={"contact_id": [
                f"Not a member of program {program.code}, which does not enrol automatically; enrol the contact first."]})
        member, _created = _enrol(uow, program, data["contact_id"], "purchase")
    return member, program


def _check_currency(program: Program, currency: str) -> None:
    if currency != program.currency:
        raise Unprocessable(f"Program {program.code} earns points on {program.currency} purchases only.",
                            errors={"currency": [f"Must be {program.currency}, the program's currency."]})


def _purchase_view(purchase: Purchase, member: Member, earn: LedgerEntry | None) -> dict:
    return {"id": purchase.id, "program_id": purchase.program_id, "member_id": purchase.member_id,
            "contact_id": member.contact_id, "external_id": purchase.external_id, "amount": purchase.amount,
            "currency": purchase.currency, "occurred_at": purchase.occurred_at, "points": purchase.points,
            "margin": purchase.margin, "discount": purchase.discount, "returned_amount": purchase.returned_amount,
            "coupon_code": purchase.coupon_code, "frozen": purchase.frozen,
            "transaction_id": earn.id if earn else None, "balance_after": earn.balance_after if earn else None,
            "factors": earn.factors if earn else [], "degraded": earn.degraded if earn else [],
            "created_at": purchase.created_at}


def _recorded(session, program_id: uuid.UUID, data: dict) -> dict | None:
    """The purchase already recorded under this external id, if it is the same one; 409 if it differs."""
    if data.get("external_id") is None:
        return None
    purchase = session.scalar(select(Purchase).where(Purchase.program_id == program_id,
                                                     Purchase.external_id == data["external_id"]))
    if purchase is None:
        return None
    member = _member(session, purchase.member_id)
    # A margin left out may have come from the program's rate the first time: only a given one must match.
    same = (purchase.amount == data["amount"] and purchase.currency == data["currency"]
            and purchase.occurred_at == data["occurred_at"] and purchase.discount == data.get("discount")
            and purchase.coupon_code == data.get("coupon_code")
            and data.get("margin") in (None, purchase.margin)
            and data.get("member_id") in (None, member.id) and data.get("contact_id") in (None, member.contact_id))
    if not same:
        raise Conflict(f"external_id {data['external_id']!r} was recorded for a different purchase.",
                       purchase_id=str(purchase.id)
                       ).for_readers(READ_SCOPE, otherwise=f"external_id {data['external_id']!r} was recorded for a "
                                                           "different purchase.")
    earn = session.scalar(select(LedgerEntry).where(LedgerEntry.purchase_id == purchase.id, LedgerEntry.kind == EARN))
    return _purchase_view(purchase, member, earn)


def record_purchase(uow: UnitOfWork, data: dict, *, plugins) -> tuple[dict, bool]:
    """Record a purchase and earn its points; the same external_id again returns the first result.

    Returns (purchase, created). The points come from the `crm_loyalty_points` plugins; the earn entry
    keeps every award with its plugin and reason. Without a margin, the program's margin_rate gives it (margins.py).
    On a frozen membership (freezes.py) the purchase is recorded but earns 0 points, no plugin is asked, and
    it is marked `frozen`.
    """
    data = {**data, "occurred_at": data["occurred_at"].astimezone(timezone.utc)}
    with uow:
        session = uow.session
        member, program = _buyer(uow, data)
        _check_currency(program, data["currency"])
        first = _recorded(session, program.id, data)
        if first is not None:
            return first, False
        member = _member(session, member.id, lock=True)
        purchase = Purchase(id=uuid.uuid4(), program_id=program.id, member_id=member.id,
                            external_id=data.get("external_id"), amount=data["amount"], currency=data["currency"],
                            occurred_at=data["occurred_at"], discount=data.get("discount"),
                            coupon_code=data.get("coupon_code"), frozen=member.frozen_at is not None,
                            margin=purchase_margin(data.get("margin"), data["amount"], program.margin_rate))
        # The same receipt may arrive concurrently (or while we waited for the member's lock).
        first = insert_or_reread(session, purchase, reread=lambda: _recorded(session, program.id, data))
        if first is not None:
            return first, False
        reason = f"purchase {purchase.external_id or purchase.id}"
        if purchase.frozen:
            points, factors, degraded = 0, [], []
            reason += " (membership frozen: no points)"
        else:
            decision = award_points(plugins, purchase, member, program)
            points = decision.points
            factors, degraded = factor_rows(decision)
        purchase.points = points
        # An earn is written even for 0 points, so the ledger explains why a purchase earned nothing.
        earn, totals = _append(uow, member, EARN, points, purchase_id=purchase.id, reason=reason, factors=factors,
                               degraded=degraded)
        uow.add_event("crm.purchase.recorded", {
            "purchase_id": purchase.id, "member_id": member.id, "contact_id": member.contact_id,
            "program_id": program.id, "amount": purchase.amount, "currency": purchase.currency,
            "occurred_at": purchase.occurred_at, "external_id": purchase.external_id, "points": points,
            "margin": purchase.margin, "discount": purchase.discount, "coupon_code": purchase.coupon_code,
        }, subject=member.id)
        if points > 0:
            uow.add_event("crm.points.earned", {
                "transaction_id": earn.id, "member_id": member.id, "contact_id": member.contact_id,
                "points": points, "balance": totals.balance, "purchase_id": purchase.id,
                "program_id": program.id, "lifetime_points": totals.lifetime_points,
            }, subject=member.id)
        uow.commit()
        return _purchase_view(purchase, member, earn), True
