"""Termination policies for partners: the partners service's SubjectAdapter, routes, worker job and evidence
handlers, over the kit in services/common/termination (docs/termination.md).

The evidence events are the partners' own: a delivery recorded, a dispute opened or updated. Their handler
evaluates the enabled policies on just the partners they name, in the consumer's batch transaction.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from services.common.runtime import Runtime
from services.common.settings import Settings
from services.common.termination import evidence
from services.common.termination.adapter import SubjectAdapter, TerminationKit
from services.common.termination.api import make_blueprint
from services.common.termination.jobs import TerminationJob

from .models import IdempotencyRecord, Termination
from .termination_history import EVIDENCE_EVENTS, eligible_partners, partner_histories, terminate_partner

URL_PREFIX = "/api/v1/termination/partners"

ADAPTER = SubjectAdapter(kind="partner", subject_ids=eligible_partners, histories=partner_histories,
                         terminate=terminate_partner, evidence_events=EVIDENCE_EVENTS)
KIT = TerminationKit(adapter=ADAPTER, models=Termination, idempotency_model=IdempotencyRecord,
                     url_prefix=URL_PREFIX)


def blueprint(_settings: Settings | None = None):
    """The /api/v1/termination/partners routes."""
    return make_blueprint(KIT)


def job(runtime: Runtime) -> TerminationJob:
    """The worker's simulations and evaluations of partners (with the evaluation schedule)."""
    return TerminationJob(runtime, KIT)


def with_evaluation(handlers: Mapping[str, Callable], runtime: Runtime) -> dict[str, Callable]:
    """`handlers` with each evidence event's handler also evaluating the partners its events name."""
    return evidence.with_evaluation(handlers, runtime, KIT)
