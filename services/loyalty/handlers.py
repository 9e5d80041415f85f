"""Integration-event handlers of the loyalty service."""
from __future__ import annotations

from services.common.catalog import Event
from services.common.consumer import event_cause, handles_batches
from services.common.uow import UnitOfWork

from . import service


@handles_batches
def on_contact_created(uow: UnitOfWork, events: list[Event]) -> None:
    """Contacts were created: enrol them in the default program when that program enrols automatically."""
    service.enrol_contacts_automatically(uow, [event.data["contact_id"] for event in events],
                                         causes=[event_cause(event) for event in events])


HANDLERS = {"crm.contact.created": on_contact_created}
