"""Termination policies for customers: the contacts service's SubjectAdapter, routes, worker job and evidence
handlers, over the kit in services/common/termination (docs/termination.md).

The evidence events: a complaint recorded (crm.interaction.recorded of type complaint), an invoice payment
(crm.payment.recorded), a fraud flag (crm.contact.flagged), a purchase and a return (crm.purchase.recorded,
crm.purchase.returned). Their handlers evaluate the enabled policies on just the contacts they name, in the
consumer's batch transaction.
"""
from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping

from services.common.catalog import Event
from services.common.runtime import Runtime
from services.common.settings import Settings
from services.common.termination import evidence
from services.common.termination.adapter import SubjectAdapter, TerminationKit
from services.common.termination.api import make_blueprint
from services.common.termination.jobs import TerminationJob

from .interactions import COMPLAINT
from .models import IdempotencyRecord, Termination
from .termination_history import customer_histories, eligible_customers, terminate_contact

URL_PREFIX = "/api/v1/termination/customers"


def _contact_of(event: Event) -> uuid.UUID | None:
    contact_id = (event.data or {}).get("contact_id")
    return None if contact_id is None else uuid.UUID(str(contact_id))


def _complainer(event: Event) -> uuid.UUID | None:
    return _contact_of(event) if (event.data or {}).get("type") == COMPLAINT else None


EVIDENCE_EVENTS: dict[str, Callable[[Event], uuid.UUID | None]] = {
    "crm.interaction.recorded": _complainer,
    "crm.payment.recorded": _contact_of,
    "crm.contact.flagged": _contact_of,
    "crm.purchase.recorded": _contact_of,
    "crm.purchase.returned": _contact_of,
}


def build_kit(settings: Settings) -> TerminationKit:
    """The customers' kit: histories read the analytics snapshot in the base currency (CRM_BASE_CURRENCY)."""
    adapter = SubjectAdapter(
        kind="customer", subject_ids=eligible_customers,
        histories=functools.partial(customer_histories, currency=settings.base_currency),
        terminate=terminate_contact, evidence_events=EVIDENCE_EVENTS)
    return TerminationKit(adapter=adapter, models=Termination, idempotency_model=IdempotencyRecord,
                          url_prefix=URL_PREFIX)


def blueprint(settings: Settings):
    """The /api/v1/termination/customers routes."""
    return make_blueprint(build_kit(settings))


def job(runtime: Runtime) -> TerminationJob:
    """The worker's simulations and evaluations of customers (with the evaluation schedule)."""
    return TerminationJob(runtime, build_kit(runtime.settings))


def with_evaluation(handlers: Mapping[str, Callable], runtime: Runtime) -> dict[str, Callable]:
    """`handlers` with each evidence event's handler also evaluating the contacts its events name."""
    return evidence.with_evaluation(handlers, runtime, build_kit(runtime.settings))
