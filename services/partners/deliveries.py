"""Deliveries: what a partner was asked to deliver, what it promised and what actually arrived.

Internal apps (purchasing, the warehouse) record one row per order once it is settled; rows are facts and are
never changed, so a scorecard computed today and next year from the same period agrees. An order reference is
unique per partner: recording the same order again with the same content answers with the stored delivery (a
retry without an Idempotency-Key is harmless), with different content it is a 409 naming the stored one.

The partner-portal functions (`*_own_*`) take the partner id of the caller's identity: another partner's
delivery is reported exactly like one that does not exist.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select

from services.common.db import new_id, utcnow
from services.common.pagination import paginate
from services.common.problems import Conflict, NotFound, Unprocessable
from services.common.uow import UnitOfWork, insert_or_reread

from .models import DELIVERY_SORTS, Contract, Delivery, Partner
from .service import READ_SCOPE

# A delivery can be recorded on the day it arrived in any time zone: UTC "today" plus one day.
MAX_CLOCK_SKEW = timedelta(days=1)
# The fields that make two recordings of one order the same recording.
CONTENT = ("contract_id", "promised_on", "delivered_on", "quantity_ordered", "quantity_delivered",
           "quantity_rejected", "amount", "agreed_amount", "currency")
_STEPS = {"quantity_ordered": Decimal("0.001"), "quantity_delivered": Decimal("0.001"),
          "quantity_rejected": Decimal("0.001"), "amount": Decimal("0.01"), "agreed_amount": Decimal("0.01")}


# -- pure rules -------------------------------------------------------------------------------------------

def delivery_problems(data: Mapping, today: date) -> dict[str, list[str]]:
    """What is wrong with one delivery beyond its shape: quantities that do not nest, impossible dates."""
    problems: dict[str, list[str]] = {}
    ordered, delivered, rejected = data["quantity_ordered"], data["quantity_delivered"], data["quantity_rejected"]
    if delivered > ordered:
        problems["quantity_delivered"] = ["Must not exceed quantity_ordered."]
    if rejected > delivered:
        problems["quantity_rejected"] = ["Must not exceed quantity_delivered."]
    delivered_on = data.get("delivered_on")
    if delivered_on is None and delivered > 0:
        problems["delivered_on"] = ["Say when the delivered quantity arrived."]
    if delivered_on is not None and delivered_on > today + MAX_CLOCK_SKEW:
        problems["delivered_on"] = ["Lies in the future; record a delivery once it has arrived."]
    return problems


def _at_column_scale(data: Mapping) -> dict:
    """Decimals at the scale their columns store, so the answer and a later read agree (and compare equal)."""
    scaled = dict(data)
    for name, step in _STEPS.items():
        if scaled.get(name) is not None:
            scaled[name] = Decimal(scaled[name]).quantize(step)
    return scaled


def _same_content(stored: Delivery, data: Mapping) -> bool:
    return all(getattr(stored, name) == data.get(name) for name in CONTENT)


# -- use cases --------------------------------------------------------------------------------------------

def _partner(session, partner_id: uuid.UUID) -> Partner:
    partner = session.scalar(select(Partner).where(Partner.id == partner_id))
    if partner is None:
        raise NotFound(f"No partner with id {partner_id}.")
    return partner


def _by_reference(session, partner_id: uuid.UUID, reference: str) -> Delivery | None:
    return session.scalar(select(Delivery).where(Delivery.partner_id == partner_id,
                                                 Delivery.order_reference == reference))


def _duplicate(existing: Delivery) -> Conflict:
    # The stored delivery's id only for a key that may read it.
    return Conflict(f"Order {existing.order_reference!r} of this partner is already recorded, with other values.",
                    existing_id=str(existing.id)).for_readers(
        READ_SCOPE, otherwise="This order of this partner is already recorded, with other values.")


def record_delivery(uow: UnitOfWork, partner_id: uuid.UUID, data: Mapping, *,
                    recorded_by: str | None) -> tuple[Delivery, bool]:
    """Record one delivery of a partner and crm.delivery.recorded; returns (delivery, whether it was new).

    The same order reference again with the same content returns the stored delivery (no second event);
    with different content it is a 409. A contract, when named, must be one of this partner's (422).
    """
    data = _at_column_scale({**data, "quantity_rejected": data.get("quantity_rejected") or Decimal(0)})
    problems = delivery_problems(data, utcnow().date())
    if problems:
        raise Unprocessable("The delivery does not hold together.", errors=problems)
    with uow:
        session = uow.session
        _partner(session, partner_id)
        contract_id = data.get("contract_id")
        if contract_id is not None and session.scalar(
                select(Contract.seq).where(Contract.id == contract_id, Contract.partner_id == partner_id)) is None:
            # Unknown and another partner's read alike.
            raise Unprocessable("The contract is not one of this partner's.",
                                errors={"contract_id": ["No contract of this partner has this id."]})
        existing = _by_reference(session, partner_id, data["order_reference"])
        if existing is not None:
            if _same_content(existing, data):
                return existing, False
            raise _duplicate(existing)
        delivery = Delivery(id=new_id(), partner_id=partner_id, order_reference=data["order_reference"],
                            recorded_by=recorded_by, created_at=utcnow(), **{name: data.get(name) for name in CONTENT})
        # Two recordings of one order at once: the unique key lets one in; the other finds it and answers as
        # above, instead of failing with the database's error.
        first = insert_or_reread(session, delivery,
                                 reread=lambda: _by_reference(session, partner_id, data["order_reference"]))
        if first is not None:
            if _same_content(first, data):
                return first, False
            raise _duplicate(first)
        uow.add_event("crm.delivery.recorded", {
            "delivery_id": delivery.id, "partner_id": partner_id, "contract_id": delivery.contract_id,
            "order_reference": delivery.order_reference, "promised_on": delivery.promised_on,
            "delivered_on": delivery.delivered_on, "occurred_at": delivery.created_at,
        }, subject=partner_id)
        uow.commit()
        return delivery, True


def _deliveries(partner_id: uuid.UUID, *, period=None, contract_id: uuid.UUID | None = None):
    stmt = select(Delivery).where(Delivery.partner_id == partner_id)
    if period is not None:
        stmt = stmt.where(Delivery.promised_on >= period.start, Delivery.promised_on <= period.end)
    if contract_id is not None:
        stmt = stmt.where(Delivery.contract_id == contract_id)
    return stmt


def _one(session, delivery_id: uuid.UUID, *, owner: uuid.UUID) -> Delivery:
    delivery = session.scalar(select(Delivery).where(Delivery.id == delivery_id, Delivery.partner_id == owner))
    if delivery is None:
        # One message for "does not exist" and "belongs to another partner", so the portal reveals nothing.
        raise NotFound(f"No delivery with id {delivery_id}.")
    return delivery


def list_deliveries(uow: UnitOfWork, partner_id: uuid.UUID, *, limit: int, cursor: str | None,
                    sort: str | None = None, period=None, contract_id: uuid.UUID | None = None) -> dict:
    """A partner's deliveries, the most recently recorded first or by `sort`, optionally of one period (by the
    promised date) or one contract; 404 for an unknown partner."""
    with uow:
        _partner(uow.session, partner_id)
        return paginate(uow.session, _deliveries(partner_id, period=period, contract_id=contract_id), Delivery.seq,
                        limit=limit, cursor=cursor, sort=sort, columns=DELIVERY_SORTS)


def get_delivery(uow: UnitOfWork, partner_id: uuid.UUID, delivery_id: uuid.UUID) -> Delivery:
    """One delivery of a partner; another partner's is not found."""
    with uow:
        return _one(uow.session, delivery_id, owner=partner_id)


# -- partner portal: only the calling partner's own deliveries ---------------------------------------------

def _owner(partner_id) -> uuid.UUID:
    # The portal must never fall back to "any partner": a missing or malformed id finds nothing.
    if not isinstance(partner_id, uuid.UUID):
        raise NotFound("No partner is bound to this key.")
    return partner_id


def list_own_deliveries(uow: UnitOfWork, partner_id, *, limit: int, cursor: str | None, sort: str | None = None,
                        period=None, contract_id: uuid.UUID | None = None) -> dict:
    """The calling partner's deliveries, the most recently recorded first or by `sort`."""
    owner = _owner(partner_id)
    with uow:
        return paginate(uow.session, _deliveries(owner, period=period, contract_id=contract_id), Delivery.seq,
                        limit=limit, cursor=cursor, sort=sort, columns=DELIVERY_SORTS)


def get_own_delivery(uow: UnitOfWork, partner_id, delivery_id: uuid.UUID) -> Delivery:
    """One of the calling partner's deliveries; anyone else's is not found."""
    owner = _owner(partner_id)
    with uow:
        return _one(uow.session, delivery_id, owner=owner)
