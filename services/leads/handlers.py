"""Integration-event handlers of the leads service."""
from __future__ import annotations

from services.common.catalog import Event
from services.common.uow import UnitOfWork

from . import service


def on_contact_created(uow: UnitOfWork, event: Event) -> None:
    """A contact was created or matched for one of our leads: link it and close the lead."""
    lead_id = event.data.get("lead_id")
    if lead_id is not None:
        service.link_contact(uow, lead_id, event.data["contact_id"])


HANDLERS = {"crm.contact.created": on_contact_created}
