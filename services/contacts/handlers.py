"""Integration-event handlers of the contacts service."""
from __future__ import annotations

from services.common.catalog import Event
from services.common.uow import UnitOfWork

from . import service


def on_lead_converted(uow: UnitOfWork, event: Event) -> None:
    """A lead was converted: create its contact, or match the contact that has its e-mail."""
    service.create_or_match_contact(uow, event.data)


HANDLERS = {"crm.lead.converted": on_lead_converted}
