"""Returns: part or all of a purchase given back, and the points it earned for that part taken back.

A purchase keeps its returns added up (`returned_amount`, `returned_margin`, `points_reclaimed`), so what is left
to return is read from its row. A return locks the purchase's member first (as every ledger write and a contact
merge do), then the purchase: two returns of one purchase take turns, and the second sees what the first took.

Points taken back (`points_owed`): after returns adding up to R of a purchase of amount A that earned P points,
the returns together owe ceil(P x R / A) points — the member keeps floor(P x (A - R) / A), rounded down as
points are earned, and a purchase returned in full, in any number of parts, gives back exactly P. Each return
owes the difference to the returns before it. It takes back what it owes as far as the balance reaches (a
balance never goes below 0); the rest is recorded on the return as `points_unrecovered`, not carried over.
"""
from __future__ import annotations

import uuid
from datetime import timezone
from decimal import Decimal

from sqlalchemy import select

from services.common.problems import Conflict, NotFound, Unprocessable
from services.common.uow import UnitOfWork

from .margins import margin_given_back
from .models import EARN, RETURN, REVERSE, LedgerEntry, Member, Purchase, PurchaseReturn
from .service import READ_SCOPE, _append, _totals

# A purchase moved to another membership by a contact merge while we waited is looked up again, this often.
_ATTEMPTS = 3
_SCALE = 10**4  # amounts have at most four decimal places: as whole ten-thousandths they divide exactly


# --- the rules (pure) -----------------------------------------------------------------------------------------

def _units(amount: Decimal) -> int:
    return int(amount * _SCALE)


def points_owed(earned: int, amount: Decimal, *, returned_before: Decimal, returning: Decimal) -> int:
    """The points a return of `returning` owes: ceil(P x R / A) for all returns so far, less the earlier ones' share."""
    def owed(returned: Decimal) -> int:
        return -(-earned * _units(returned) // _units(amount))  # ceil, in exact integers

    return max(0, owed(returned_before + returning) - owed(returned_before))


def returnable(purchase: Purchase) -> Decimal:
    """What is left of the purchase to return."""
    return purchase.amount - purchase.returned_amount


# --- the use case ---------------------------------------------------------------------------------------------

def _locked(session, purchase_id: uuid.UUID) -> tuple[Purchase, Member]:
    """The purchase and its member, both locked: the member first (every ledger writer's order), then the purchase."""
    for _attempt in range(_ATTEMPTS):
        member_id = session.scalar(select(Purchase.member_id).where(Purchase.id == purchase_id))
        if member_id is None:
            raise NotFound(f"No purchase with id {purchase_id}.")
        member = session.scalar(select(Member).where(Member.id == member_id).with_for_update()
                                .execution_options(populate_existing=True))
        purchase = session.scalar(select(Purchase).where(Purchase.id == purchase_id).with_for_update()
                                  .execution_options(populate_existing=True))
        if purchase.member_id == member.id:
            return purchase, member
        # A contact merge moved the purchase to the surviving membership while we waited for this one's lock.
    raise Conflict(f"Purchase {purchase_id} is being moved by a contact merge; try again.")


def _earned(session, purchase: Purchase) -> int:
    """The points the purchase earned, or 0 when its earn entry was reversed (nothing is left to take back)."""
    earn = select(LedgerEntry.id).where(LedgerEntry.purchase_id == purchase.id, LedgerEntry.kind == EARN)
    reversed_ = session.scalar(select(LedgerEntry.id).where(LedgerEntry.kind == REVERSE,
                                                            LedgerEntry.reverses_id.in_(earn)))
    return 0 if reversed_ is not None else purchase.points


def _check(purchase: Purchase, data: dict) -> Decimal | None:
    """422 naming the field, or 409 for more than is left; returns the margin the return gives back."""
    if data["occurred_at"] < purchase.occurred_at:
        raise Unprocessable("A return cannot happen before its purchase.", errors={
            "occurred_at": [f"Must not be before the purchase ({purchase.occurred_at.isoformat()})."]})
    left = returnable(purchase)
    if data["amount"] > left:
        raise Conflict(f"Only {left} {purchase.currency} of purchase {purchase.id} is left to return.",
                       slug="return-exceeds-purchase", title="More than is left to return", returnable=str(left),
                       returned=str(purchase.returned_amount)
                       ).for_readers(READ_SCOPE, otherwise="The return is more than is left of the purchase.")
    margin = data.get("margin")
    if margin is None:
        return margin_given_back(purchase.margin, purchase.amount, returned_before=purchase.returned_amount,
                                 margin_returned_before=purchase.returned_margin, returning=data["amount"])
    if purchase.margin is None:
        raise Unprocessable("The purchase was recorded without a margin.",
                            errors={"margin": ["The purchase has no margin to give back; leave it out."]})
    margin_left = purchase.margin - purchase.returned_margin
    if margin > margin_left:
        raise Unprocessable("The return gives back more margin than the purchase has left.",
                            errors={"margin": [f"At most {margin_left} is left of the purchase's margin."]})
    return margin


def return_purchase(uow: UnitOfWork, purchase_id: uuid.UUID, data: dict) -> dict:
    """Record a return of part or all of a purchase and take back the points it earned for that part."""
    data = {**data, "occurred_at": data["occurred_at"].astimezone(timezone.utc)}
    with uow:
        session = uow.session
        purchase, member = _locked(session, purchase_id)
        margin = _check(purchase, data)
        owed = points_owed(_earned(session, purchase), purchase.amount, returned_before=purchase.returned_amount,
                           returning=data["amount"])
        before = _totals(session, member.id)
        taken = min(owed, max(before.balance, 0))
        record = PurchaseReturn(id=uuid.uuid4(), purchase_id=purchase.id, amount=data["amount"], margin=margin,
                                currency=purchase.currency, reason=data.get("reason"), occurred_at=data["occurred_at"],
                                points=taken, points_unrecovered=owed - taken)
        purchase.returned_amount += data["amount"]
        purchase.returned_margin += margin or 0
        purchase.points_reclaimed += taken
        entry, totals = None, before
        if taken:
            entry, totals = _append(uow, member, RETURN, -taken, before=before, purchase_id=purchase.id,
                                    reason=f"return {record.id} of purchase {purchase.external_id or purchase.id}")
            record.transaction_id = entry.id
        session.add(record)
        session.flush()
        uow.add_event("crm.purchase.returned", {
            "return_id": record.id, "purchase_id": purchase.id, "member_id": member.id,
            "contact_id": member.contact_id, "program_id": purchase.program_id, "amount": record.amount,
            "margin": record.margin, "currency": record.currency, "occurred_at": record.occurred_at,
            "points": taken, "reason": record.reason}, subject=member.id)
        if entry is not None:
            uow.add_event("crm.points.reclaimed", {
                "transaction_id": entry.id, "member_id": member.id, "contact_id": member.contact_id,
                "program_id": member.program_id, "points": taken, "balance": totals.balance,
                "lifetime_points": totals.lifetime_points, "purchase_id": purchase.id, "return_id": record.id,
            }, subject=member.id)
        uow.commit()
        return _return_view(record, purchase, member, balance=totals.balance)


def _return_view(record: PurchaseReturn, purchase: Purchase, member: Member, *, balance: int) -> dict:
    return {"id": record.id, "purchase_id": purchase.id, "member_id": member.id, "contact_id": member.contact_id,
            "program_id": purchase.program_id, "amount": record.amount, "margin": record.margin,
            "currency": record.currency, "reason": record.reason, "occurred_at": record.occurred_at,
            "points": record.points, "points_unrecovered": record.points_unrecovered,
            "transaction_id": record.transaction_id, "balance_after": balance,
            "returned_amount": purchase.returned_amount, "returnable_amount": returnable(purchase),
            "created_at": record.created_at}
