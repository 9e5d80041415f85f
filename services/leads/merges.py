"""Merged contacts in the leads service: leads that named a merged contact name its survivor (crm.contact.merged)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import update

from services.common.uow import UnitOfWork

from .models import Lead


def repoint_merged_contacts(uow: UnitOfWork, merges: Sequence[Mapping]) -> int:
    """Leads naming a merged contact, or an id merged into it before, name the survivor now; returns leads changed.

    One UPDATE per merge, in delivery order. Running it again finds nothing to change (a redelivery), and
    because every id of the chain moves at once the outcome is the same whichever of two chained merges
    (A into B, then B into C) comes first.
    """
    with uow:
        changed = 0
        for merge in merges:
            merged_ids = [merge["merged_id"], *merge.get("previously_merged_ids", ())]
            changed += uow.session.execute(
                update(Lead).where(Lead.contact_id.in_(merged_ids))
                .values(contact_id=merge["survivor_id"], version=Lead.version + 1)
                .execution_options(synchronize_session=False)).rowcount
        uow.commit()
        return changed
