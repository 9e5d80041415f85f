"""Integration-event handlers of the contacts service."""
from __future__ import annotations

from services.common.catalog import Event
from services.common.uow import UnitOfWork

from . import service


def on_lead_converted(uow: UnitOfWork, event: Event) -> None:
    """A lead was converted: create its contact, or match the contact that has its e-mail."""
    service.create_or_match_contact(uow, event.data)


def on_purchase_recorded(uow: UnitOfWork, event: Event) -> None:
    """A purchase was recorded: count it once in its contact's purchase metrics."""
    service.record_purchase_metrics(uow, event.data, event_id=event.id)


HANDLERS = {
    "crm.lead.converted": on_lead_converted,
    "crm.purchase.recorded": on_purchase_recorded,
}
