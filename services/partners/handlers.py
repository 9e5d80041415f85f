"""Integration-event handlers of the partners service.

The partners' own delivery and dispute events bring termination evidence: their handler evaluates the enabled
termination policies on the partners named (the evaluation is bound by termination.with_evaluation in
app.create_worker). The suite registry binds the partners queue to exactly the event types listed here.
"""
from __future__ import annotations

from services.common.catalog import Event
from services.common.consumer import Handler, handles_batches
from services.common.termination.evidence import evaluates_termination
from services.common.uow import UnitOfWork

from .termination_history import EVIDENCE_EVENTS


@handles_batches
@evaluates_termination
def on_termination_evidence(uow: UnitOfWork, events: list[Event], *, evaluate) -> None:
    """Deliveries were recorded or disputes opened or updated: evaluate the termination policies on their partners."""
    evaluate(uow, events)


HANDLERS: dict[str, Handler] = {event_type: on_termination_evidence for event_type in EVIDENCE_EVENTS}
