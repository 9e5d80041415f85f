"""Integration-event handlers of the loyalty service."""
from __future__ import annotations

from services.common.catalog import Event
from services.common.uow import UnitOfWork

from . import service


def on_contact_created(uow: UnitOfWork, event: Event) -> None:
    """A contact was created: enrol it in the default program when that program enrols automatically."""
    service.enrol_contact_automatically(uow, event.data["contact_id"])


HANDLERS = {"crm.contact.created": on_contact_created}
