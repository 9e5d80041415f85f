"""Applying one chunk of checked import rows to the contacts, with their events, in the caller's transaction.

Rows upsert by normalised e-mail: an unknown address creates a contact (`crm.contact.created`, lead_id null,
matched false) in the account of its e-mail domain, if there is one; a known one takes the row's non-empty
values (tags are added, attributes set by name), and only when that changes something does the contact get a
new version and `crm.contact.updated` naming the changed fields. A row that changes nothing writes nothing.

On PostgreSQL a chunk is set-based: COPY into a temporary table, then one statement locks the known contacts in
e-mail order, updates those that change, inserts the new ones in e-mail order and writes every outbox row. Two
imports (or an import and a lead conversion, which locks and inserts in the same order) touching the same
addresses wait for each other rather than deadlock. Elsewhere (SQLite, one writer at a time) the ORM does it row
by row.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from services.common.catalog import SPEC_VERSION
from services.common.db import is_postgres, new_id, utcnow
from services.common.outbox import OUTBOX_NOTIFY_CHANNEL
from services.common.uow import UnitOfWork

from .accounts import match_accounts
from .models import PROFILE_FIELDS, Contact
from .tags import TAGS_PER_RECORD

CREATED, UPDATED, UNCHANGED, REFUSED = "created", "updated", "unchanged", "refused"
JSON_FIELDS = ("tags", "attributes")
CHANGEABLE = tuple(sorted(PROFILE_FIELDS + JSON_FIELDS))  # in the order crm.contact.updated lists them
# A concurrent writer may create an address between our look-up and our insert; its row is then updated by a
# second pass (it is committed by then, as ON CONFLICT waited for it). More passes mean a writer keeps deleting.
MAX_PASSES = 3


@dataclass
class ChunkOutcome:
    """What a chunk did: counts by outcome, the ids of the contacts it created, the rows it refused."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    created_ids: list[uuid.UUID] = field(default_factory=list)
    refused_rows: list[int] = field(default_factory=list)  # would exceed TAGS_PER_RECORD


def apply_rows(uow: UnitOfWork, rows: list[dict]) -> ChunkOutcome:
    """Upsert `rows` (row, email, email_normalized and the given fields; one row per address)."""
    if not rows:
        return ChunkOutcome()
    if is_postgres(uow.session):
        return _apply_on_postgres(uow, rows)
    return _apply_with_orm(uow, rows)


# -- PostgreSQL: set-based -------------------------------------------------------------------------------------

_COLUMNS = ("row", "email", "email_normalized") + PROFILE_FIELDS + JSON_FIELDS
_STAGE = text(
    "CREATE TEMPORARY TABLE import_rows (row integer, email text, email_normalized text PRIMARY KEY, "
    + ", ".join(f"{name} text" for name in PROFILE_FIELDS) + ", tags jsonb, attributes jsonb) ON COMMIT DROP")
_COPY = f"COPY import_rows ({', '.join(_COLUMNS)}) FROM STDIN"

# Tags added to the current ones: sorted by code point, as Python sorts them (tags.tag_set), unique.
_ADDED_TAGS = ("(SELECT jsonb_agg(d.tag ORDER BY d.tag COLLATE \"C\") FROM "
               "(SELECT DISTINCT value AS tag FROM jsonb_array_elements_text(k.old_tags || k.new_tags)) d)")
_NEW_VALUES = ", ".join(
    [f"COALESCE(k.new_{name}, k.old_{name}) AS {name}" for name in PROFILE_FIELDS]
    + [f"CASE WHEN k.new_tags IS NULL THEN k.old_tags ELSE {_ADDED_TAGS} END AS tags",
       ("CASE WHEN k.new_attributes IS NULL THEN k.old_attributes ELSE k.old_attributes || k.new_attributes END"
        " AS attributes")])
_CHANGED = "array_remove(ARRAY[" + ", ".join(
    f"CASE WHEN n.{name} IS DISTINCT FROM k.old_{name} THEN '{name}' END" for name in CHANGEABLE) + "]::text[], NULL)"

_UPSERT = text(f"""
WITH known AS (
    SELECT c.seq, c.id, c.email_normalized, r.row,
           {", ".join(f"c.{name} AS old_{name}, r.{name} AS new_{name}" for name in CHANGEABLE)}
    FROM contacts c JOIN import_rows r ON r.email_normalized = c.email_normalized
    ORDER BY c.email_normalized
    FOR UPDATE OF c
),
planned AS (
    SELECT k.seq, k.id, k.email_normalized, k.row, n.*, {_CHANGED} AS changed,
           jsonb_array_length(n.tags) > {TAGS_PER_RECORD} AS refused
    FROM known k CROSS JOIN LATERAL (SELECT {_NEW_VALUES}) n
),
updated AS (
    UPDATE contacts c
    SET {", ".join(f"{name} = p.{name}" for name in CHANGEABLE)}, version = c.version + 1, updated_at = :now
    FROM planned p
    WHERE c.seq = p.seq AND cardinality(p.changed) > 0 AND NOT p.refused
    RETURNING c.id, c.email_normalized, c.version, p.changed
),
inserted AS (
    INSERT INTO contacts (id, {", ".join(_COLUMNS[1:])}, account_id, consents, created_at, updated_at, version)
    SELECT gen_random_uuid(), {", ".join(f"r.{name}" for name in _COLUMNS[1:-2])},
           COALESCE(r.tags, '[]'), COALESCE(r.attributes, '{{}}'), a.id, '{{}}', :now, :now, 1
    FROM import_rows r
    -- The rule of accounts.match_accounts, applied as the row goes in: the account of the address domain.
    LEFT JOIN accounts a ON a.domain = split_part(r.email_normalized, '@', -1)
    WHERE NOT EXISTS (SELECT 1 FROM known k WHERE k.email_normalized = r.email_normalized)
    ORDER BY r.email_normalized
    ON CONFLICT (email_normalized) DO NOTHING
    RETURNING id, email, email_normalized
),
events AS (
    SELECT gen_random_uuid() AS event_id, 'crm.contact.created' AS event_type, i.id AS contact_id,
           json_build_object('contact_id', i.id, 'email', i.email, 'lead_id', NULL, 'matched', false) AS data
    FROM inserted i
    UNION ALL
    SELECT gen_random_uuid(), 'crm.contact.updated', u.id,
           json_build_object('contact_id', u.id, 'changed', to_json(u.changed), 'version', u.version)
    FROM updated u
),
announced AS (
    INSERT INTO outbox (event_id, event_type, payload, created_at, attempts)
    SELECT e.event_id, e.event_type,
           json_build_object('specversion', CAST(:specversion AS text), 'id', e.event_id,
                             'source', CAST(:source AS text), 'type', e.event_type, 'time', CAST(:time AS text),
                             'subject', e.contact_id::text, 'datacontenttype', 'application/json',
                             'data', e.data, 'correlationid', CAST(:correlation_id AS text),
                             'causationid', CAST(:causation_id AS text))::text,
           :now, 0
    FROM events e
    RETURNING 1
)
SELECT '{CREATED}' AS outcome, id, email_normalized FROM inserted
UNION ALL SELECT '{UPDATED}', id, email_normalized FROM updated
UNION ALL SELECT '{UNCHANGED}', id, email_normalized FROM planned WHERE cardinality(changed) = 0
UNION ALL SELECT '{REFUSED}', id, email_normalized FROM planned WHERE refused
""")
_FORGET = text("DELETE FROM import_rows WHERE email_normalized = ANY(:done)")


def _stage(session: Session, rows: list[dict]) -> None:
    session.execute(_STAGE)
    cursor = session.connection().connection.driver_connection.cursor()
    with cursor, cursor.copy(_COPY) as copy:
        for row in rows:
            copy.write_row([row.get(name) for name in _COLUMNS[:-2]]
                           + [None if row.get(name) is None else json.dumps(row[name]) for name in JSON_FIELDS])
    # Statistics for the planner, which would otherwise guess the size of a table it has never seen.
    session.execute(text("ANALYZE import_rows"))


def _apply_on_postgres(uow: UnitOfWork, rows: list[dict]) -> ChunkOutcome:
    session = uow.session
    session.flush()  # the statement below must see what the session holds
    _stage(session, rows)
    now = utcnow()
    params = {"now": now, "time": now.isoformat(), "specversion": SPEC_VERSION, "source": uow.source,
              "correlation_id": uow.correlation_id, "causation_id": uow.causation_id}
    row_of = {row["email_normalized"]: row["row"] for row in rows}
    outcome, left = ChunkOutcome(), len(rows)
    for _pass in range(MAX_PASSES):
        results = session.execute(_UPSERT, params).all()
        for kind, contact_id, key in results:
            if kind == REFUSED:
                outcome.refused_rows.append(row_of[key])
                continue
            setattr(outcome, kind, getattr(outcome, kind) + 1)
            if kind == CREATED:
                outcome.created_ids.append(contact_id)
        left -= len(results)
        if not left:
            break
        session.execute(_FORGET, {"done": [key for _kind, _id, key in results]})
    else:
        raise RuntimeError(f"{left} import rows clashed with concurrent writers {MAX_PASSES} times; retry the chunk")
    if outcome.created or outcome.updated:
        # As UnitOfWork.commit does for the events it records: the relay publishes as soon as this commits.
        session.execute(text(f"NOTIFY {OUTBOX_NOTIFY_CHANNEL}"))
    session.execute(text("DROP TABLE import_rows"))
    return outcome


# -- elsewhere: the ORM --------------------------------------------------------------------------------------

def _planned(contact: Contact, row: dict) -> dict:
    """The values `row` gives `contact`: its non-empty fields, tags added, attributes set by name."""
    planned = {name: row[name] for name in PROFILE_FIELDS if row.get(name) is not None}
    if row.get("tags") is not None:
        planned["tags"] = sorted(set(contact.tags) | set(row["tags"]))
    if row.get("attributes") is not None:
        planned["attributes"] = {**contact.attributes, **row["attributes"]}
    return planned


def _apply_with_orm(uow: UnitOfWork, rows: list[dict]) -> ChunkOutcome:
    session = uow.session
    keys = sorted(row["email_normalized"] for row in rows)
    known = {contact.email_normalized: contact for contact in session.scalars(
        select(Contact).where(Contact.email_normalized.in_(keys)).order_by(Contact.email_normalized)
        .with_for_update())}
    outcome = ChunkOutcome()
    for row in rows:
        contact = known.get(row["email_normalized"])
        if contact is None:
            contact = Contact(id=new_id(), version=1, consents={}, tags=row.get("tags") or [],
                              attributes=row.get("attributes") or {},
                              **{name: row.get(name) for name in _COLUMNS[1:-2]})
            session.add(contact)
            uow.add_event("crm.contact.created",
                          {"contact_id": contact.id, "email": contact.email, "lead_id": None, "matched": False},
                          subject=contact.id)
            outcome.created += 1
            outcome.created_ids.append(contact.id)
            continue
        changes = {name: value for name, value in _planned(contact, row).items() if value != getattr(contact, name)}
        if len(changes.get("tags", ())) > TAGS_PER_RECORD:
            outcome.refused_rows.append(row["row"])
        elif not changes:
            outcome.unchanged += 1
        else:
            for name, value in changes.items():
                setattr(contact, name, value)
            contact.version += 1
            uow.add_event("crm.contact.updated",
                          {"contact_id": contact.id, "changed": sorted(changes), "version": contact.version},
                          subject=contact.id)
            outcome.updated += 1
    session.flush()
    # The new contacts join the account of their e-mail domain (one UPDATE for the chunk).
    match_accounts(session, outcome.created_ids)
    return outcome
