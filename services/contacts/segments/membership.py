"""Segment membership at a refresh: who entered and who left each segment, with their events.

The analytics runner calls `refresh_memberships` as its `segments` step, in that step's transaction, after the
measures are computed and before the snapshot is marked completed; so the rules read the refresh being run,
not the current snapshot. For each segment of the refresh's currency, two set-based statements compare the
rule with `segment_members` (the membership the previous refresh left): a DELETE of the members the rule no
longer matches and an INSERT ... SELECT of the contacts it newly matches, each RETURNING the contact ids. Those
ids become crm.segment.left and crm.segment.entered events. A refresh that finds no change announces nothing.

The events are written to the outbox in bulk: the event is built and validated once per segment and kind, and
each contact's payload is that JSON with its own event id and contact id put in. On PostgreSQL the change and
its outbox rows are one statement (the DELETE or INSERT ... RETURNING feeds an INSERT into the outbox in a
data-modifying CTE), so 100,000 changes never travel to Python; SQLite (one writer, small data) does the same
in Python. The events are therefore not in `uow.events`; the outbox relay is woken by its NOTIFY (PostgreSQL)
as after any commit with events.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import datetime

from sqlalchemy import Text, and_, cast, delete, exists, func, insert, literal, select, text

from services.common.catalog import make_event
from services.common.outbox import OUTBOX_NOTIFY_CHANNEL
from services.common.problems import Unprocessable

from ..models import OutboxMessage, Segment, SegmentMember
from . import sql
from .service import checked_rules

log = logging.getLogger("crm.contacts.segments")

ENTERED, LEFT = "crm.segment.entered", "crm.segment.left"
# Stand-ins rendered into the event template, then replaced per contact (ids of version 4 never take these).
_EVENT_MARK, _CONTACT_MARK = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
_MEMBERS = SegmentMember.__table__


def _left(segment: Segment, matching):
    """DELETE the members the rule no longer matches, RETURNING their contact ids."""
    still = exists(matching.where(sql.CONTACTS.c.id == _MEMBERS.c.contact_id))
    return (delete(_MEMBERS).where(_MEMBERS.c.segment_id == segment.id, ~still)
            .returning(_MEMBERS.c.contact_id))


def _entered(segment: Segment, matching, now: datetime):
    """INSERT the contacts the rule matches that are not members yet, RETURNING their contact ids."""
    known = exists(select(literal(1)).select_from(_MEMBERS).where(
        and_(_MEMBERS.c.segment_id == segment.id, _MEMBERS.c.contact_id == sql.CONTACTS.c.id)))
    rows = (matching.where(~known)
            .with_only_columns(literal(segment.id, _MEMBERS.c.segment_id.type).label("segment_id"),
                               sql.CONTACTS.c.id.label("contact_id"),
                               literal(now, _MEMBERS.c.entered_at.type).label("entered_at")))
    return (insert(_MEMBERS).from_select(["segment_id", "contact_id", "entered_at"], rows)
            .returning(_MEMBERS.c.contact_id))


def event_template(uow, event_type: str, segment_id: uuid.UUID, *, refresh_id: uuid.UUID | None,
                   now: datetime) -> str:
    """The CloudEvents JSON of one membership event, validated, with stand-ins for its event and contact ids."""
    event = make_event(event_type, {"segment_id": segment_id, "contact_id": _CONTACT_MARK, "refresh_id": refresh_id,
                                    "occurred_at": now},
                       source=uow.source, subject=_CONTACT_MARK, correlationid=uow.correlation_id,
                       causationid=uow.causation_id)
    return replace(event, id=_EVENT_MARK, time=now).to_json()


def _changed_and_announced(uow, change, event_type: str, segment: Segment, *, refresh_id, now: datetime) -> int:
    """PostgreSQL: run `change` (a DML RETURNING contact ids) and write its events, in one statement; how many."""
    uow.write_outbox()  # the events recorded before these come before them in the outbox
    changed = change.cte(f"changed_{event_type.rsplit('.', 1)[-1]}")
    template = event_template(uow, event_type, segment.id, refresh_id=refresh_id, now=now)
    numbered = select(func.gen_random_uuid().label("event_id"), changed.c.contact_id).subquery("numbered")
    payload = func.replace(func.replace(literal(template, Text), _EVENT_MARK, cast(numbered.c.event_id, Text)),
                           _CONTACT_MARK, cast(numbered.c.contact_id, Text))
    outbox = OutboxMessage.__table__
    rows = select(numbered.c.event_id, literal(event_type, outbox.c.event_type.type), payload,
                  literal(now, outbox.c.created_at.type), literal(0, outbox.c.attempts.type))
    events = (insert(outbox).from_select(["event_id", "event_type", "payload", "created_at", "attempts"], rows,
                                         include_defaults=False)
              .returning(outbox.c.event_id).cte("events"))
    return uow.session.scalar(select(func.count()).select_from(events))


def announce(uow, event_type: str, segment_id: uuid.UUID, contact_ids: list[uuid.UUID], *,
             refresh_id: uuid.UUID | None, now: datetime) -> int:
    """Write one `event_type` event per contact to the outbox, in bulk (one event validated, the rest copied)."""
    if not contact_ids:
        return 0
    template = event_template(uow, event_type, segment_id, refresh_id=refresh_id, now=now)
    uow.write_outbox()  # the events recorded before these come before them in the outbox
    rows = []
    for contact_id in contact_ids:
        event_id = uuid.uuid4()
        payload = template.replace(_EVENT_MARK, str(event_id)).replace(_CONTACT_MARK, str(contact_id))
        rows.append({"event_id": event_id, "event_type": event_type, "payload": payload, "created_at": now})
    uow.session.execute(insert(OutboxMessage.__table__), rows)
    return len(rows)


def refresh_segment(uow, segment: Segment, *, refresh_id: uuid.UUID | None, now: datetime) -> dict:
    """Bring one segment's recorded membership up to its rule; announce the changes. Counts of each."""
    session = uow.session
    rule = checked_rules(session, segment.rules)
    matching = sql.matching_ids(rule, segment.currency, now, refresh_id=refresh_id)
    changes = ((LEFT, _left(segment, matching)), (ENTERED, _entered(segment, matching, now)))
    counts = {}
    for event_type, change in changes:  # the members who left first: the INSERT then sees only those who stay
        if session.get_bind().dialect.name == "postgresql":
            counts[event_type] = _changed_and_announced(uow, change, event_type, segment, refresh_id=refresh_id, now=now)
        else:
            contact_ids = sorted(session.execute(change).scalars())
            counts[event_type] = announce(uow, event_type, segment.id, contact_ids, refresh_id=refresh_id, now=now)
    segment.member_count = session.scalar(select(func.count()).select_from(_MEMBERS)
                                          .where(_MEMBERS.c.segment_id == segment.id))
    segment.members_refreshed_at = now
    return {"entered": counts[ENTERED], "left": counts[LEFT], "members": segment.member_count}


def refresh_memberships(uow, refresh, now) -> dict:
    """Recompute every segment of refresh.currency; publish crm.segment.entered|left; segment name -> changes.

    A segment whose rules no longer check (a custom attribute it names was deleted) keeps its recorded
    membership; its entry says why.
    """
    session = uow.session
    segments = session.scalars(select(Segment).where(Segment.currency == refresh.currency)
                               .order_by(Segment.seq).with_for_update()).all()
    outcome, announced = {}, 0
    for segment in segments:
        try:
            with session.begin_nested():
                outcome[segment.name] = refresh_segment(uow, segment, refresh_id=refresh.id, now=now)
        except Unprocessable as exc:
            log.warning("segment %s not refreshed: %s %s", segment.id, exc.detail, exc.extra.get("errors"))
            outcome[segment.name] = {"error": exc.detail, "errors": exc.extra.get("errors")}
            continue
        announced += outcome[segment.name]["entered"] + outcome[segment.name]["left"]
    if announced and session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {OUTBOX_NOTIFY_CHANNEL}"))
    session.flush()
    return outcome
