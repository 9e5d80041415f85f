"""What the kit needs from the service that owns the subjects: the `SubjectAdapter`, and a service's `TerminationKit`.

The kit never imports a service. Contacts (customers) and partners (partners) each build an adapter from their
own functions (termination_history.py) and hand the kit their tables and idempotency model.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crm_plugins.types import TerminationSubject

from services.common.catalog import Event

from .models import TerminationModels

SubjectIds = Callable[[Any, "int | None", int], "list[tuple[int, uuid.UUID]]"]
Histories = Callable[[Any, Sequence[uuid.UUID], datetime, int], "dict[uuid.UUID, tuple[TerminationSubject, Any]]"]
Terminate = Callable[..., str]


@dataclass(frozen=True)
class SubjectAdapter:
    """One subject kind's access to its subjects.

    subject_ids(session, after_seq, limit): the non-terminated subjects after `after_seq`, as (seq, id) by seq.
    histories(session, ids, as_of, window_days): each id's (TerminationSubject, history), in grouped queries
        for the whole batch, never one per id; an id missing from the answer is skipped.
    terminate(uow, subject_id, *, recommendation_id, decision_id, reason): end the relationship in the caller's
        unit of work, record its event, return the effect's name.
    evidence_events: event type -> the subject id the event brings evidence about (None: nobody).
    """

    kind: str
    subject_ids: SubjectIds
    histories: Histories
    terminate: Terminate
    evidence_events: Mapping[str, Callable[[Event], uuid.UUID | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class TerminationKit:
    """Everything the kit's use cases, job and routes need for one service."""

    adapter: SubjectAdapter
    models: TerminationModels
    idempotency_model: type
    url_prefix: str  # e.g. /api/v1/termination/customers

    @property
    def kind(self) -> str:
        return self.adapter.kind


def subject_ids_of(adapter: SubjectAdapter, events: Sequence[Event]) -> list[uuid.UUID]:
    """The distinct subjects `events` bring evidence about, in the order first named."""
    seen: dict[uuid.UUID, None] = {}
    for event in events:
        find = adapter.evidence_events.get(event.type)
        subject_id = find(event) if find is not None else None
        if subject_id is not None:
            seen.setdefault(subject_id, None)
    return list(seen)
