"""Integration-event handlers of the leads service."""
from __future__ import annotations

from services.common.catalog import Event
from services.common.consumer import handles_batches
from services.common.uow import UnitOfWork

from . import service


@handles_batches
def on_contact_created(uow: UnitOfWork, events: list[Event]) -> None:
    """Contacts were created or matched for some of our leads: link them and close the leads."""
    links = [(event.data["lead_id"], event.data["contact_id"]) for event in events
             if event.data.get("lead_id") is not None]
    if links:
        service.link_contacts(uow, links)


HANDLERS = {"crm.contact.created": on_contact_created}
