"""Erasure in the loyalty service: a person's ledger kept anonymous, the messages naming them purged, confirmed.

Loyalty knows a person only by the pseudonymous contact id: a membership holds no name or address. What can
name them is free text: the reason typed for a redemption, adjustment or return, and the explanations plugins
give for an earn. Those go; every amount stays, so balances, lifetime points and program totals stay right. `STEPS` and
`KEPT` are this service's one list of its tables (DESIGN §8).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import select

from services.common.erasure import (
    Erase,
    People,
    confirm_erasures,
    erase_tables,
    purge_messages,
)
from services.common.uow import UnitOfWork

from .models import Base, IdempotencyRecord, Member, OutboxMessage, Purchase


def _members_of(people: People):
    return select(Member.id).where(Member.contact_id.in_(people.contact_ids))


def _purchases_of(people: People):
    return select(Purchase.id).where(Purchase.member_id.in_(_members_of(people)))


STEPS = (
    Erase("ledger_entries", lambda t, p: t.c.member_id.in_(_members_of(p)),
          values=lambda t: {"reason": None, "factors": [], "degraded": []},
          why="the reasons typed and the plugins' explanations; the points stay"),
    Erase("purchase_returns", lambda t, p: t.c.purchase_id.in_(_purchases_of(p)), values=lambda t: {"reason": None},
          why="the reasons typed for returns; amounts, margins and points stay"),
    Erase("frozen_contacts", lambda t, p: t.c.contact_id.in_(p.contact_ids) & t.c.reason.isnot(None),
          values=lambda t: {"reason": None}, why="the termination reason an operator typed; the freeze itself stays"),
)

KEPT = {
    "programs": "the programs themselves",
    "members": "the memberships: program, pseudonymous contact id, tier and dates (a frozen one's termination "
               "reason is read from frozen_contacts, erased there)",
    "purchases": "amounts, margins, discounts, coupon codes, currencies, times and receipt numbers under the member",
}


def erase_people(uow: UnitOfWork, erasures: Sequence[Mapping], *, causes: Sequence[Mapping]) -> dict[str, int]:
    """Erase the people of some crm.contact.erased payloads and confirm each; rows erased per table, for the batch.

    One statement per table for the whole batch, and one scan each of the outbox and the idempotency keys
    (for the contact ids and the members' ids: a redemption's stored response names only the member).
    """
    people = People.of(erasures)
    with uow:
        session = uow.session
        people = people.with_(record_ids=session.scalars(_members_of(people)))
        erased = erase_tables(session, Base.metadata, STEPS, people)
        erased.update(purge_messages(session, OutboxMessage, IdempotencyRecord, people))
        confirm_erasures(uow, erasures, causes=causes)
        uow.commit()
        return erased
