"""Integration-event handlers of the contacts service."""
from __future__ import annotations

from services.common.catalog import Event
from services.common.consumer import event_cause, handles_batches
from services.common.uow import UnitOfWork

from . import service


@handles_batches
def on_lead_converted(uow: UnitOfWork, events: list[Event]) -> None:
    """Leads were converted: create their contacts, or match the contacts that have their e-mails."""
    service.create_or_match_contacts(uow, [event.data for event in events],
                                     causes=[event_cause(event) for event in events])


def on_purchase_recorded(uow: UnitOfWork, event: Event) -> None:
    """A purchase was recorded: count it once in its contact's purchase metrics."""
    service.record_purchase_metrics(uow, event.data, event_id=event.id)


HANDLERS = {
    "crm.lead.converted": on_lead_converted,
    "crm.purchase.recorded": on_purchase_recorded,
}
