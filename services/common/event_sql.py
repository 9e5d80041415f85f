"""Events written to the outbox by SQL, many rows in one statement, each exactly as UnitOfWork.add_event writes it.

Bulk changes (an import chunk, a refresh's stage changes) publish one event per row. Building and validating a
CloudEvents object per row in Python would cost more than the change itself, so the event is validated and
rendered once, from a sample, with a marker in each *hole* (its id, subject and the data fields that differ per
row). The text between the markers becomes bound parameters and SQL fills the holes row by row. PostgreSQL only
(the `%(name)s` parameters are psycopg's); elsewhere the services write events through the unit of work.
"""
from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from .catalog import make_event
from .uow import UnitOfWork


def payload_sql(uow: UnitOfWork, event_type: str, sample: Mapping, holes: Mapping[str, str], *, now: datetime,
                params: dict) -> str:
    """SQL concatenating the event's JSON text; `holes` maps `id`, `subject` and data fields to SQL giving their
    JSON text. The fixed pieces are added to `params` (the statement's psycopg parameters).

    The events `uow` recorded so far are written to the outbox first, so the rows the statement writes come after
    them, in the order the events happened."""
    uow.write_outbox()
    markers = {name: f"hole-{name}-{uuid.uuid4().hex}" for name in holes}
    event = make_event(event_type, dict(sample), source=uow.source, correlationid=uow.correlation_id,
                       causationid=uow.causation_id)
    data = {**event.wire_data, **{name: marker for name, marker in markers.items() if name in event.wire_data}}
    rendered = replace(event, id=markers["id"], subject=markers["subject"], time=now, wire_data=data).to_json()
    hole_of = {json.dumps(marker): name for name, marker in markers.items()}
    pieces = []
    for part in re.split("(" + "|".join(map(re.escape, hole_of)) + ")", rendered):
        if part in hole_of:
            pieces.append(holes[hole_of[part]])
        elif part:
            key = f"payload_{len(params)}"
            params[key] = part
            pieces.append(f"CAST(%({key})s AS text)")
    return "concat(" + ", ".join(pieces) + ")"
