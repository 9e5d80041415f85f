"""Applying one chunk of checked import rows to the contacts, with their events, in the caller's transaction.

Rows upsert by normalised e-mail: an unknown address creates a contact (`crm.contact.created`, lead_id null,
matched false) in the account of its e-mail domain, if there is one; a known one takes the row's non-empty
values (tags are added, attributes set by name), and only when that changes something does the contact get a
new version and `crm.contact.updated` naming the changed fields. A row that changes nothing writes nothing.

On PostgreSQL a chunk is one statement (one round trip), its rows sent as arrays: it compares the known contacts
with their rows without locking them, locks in e-mail order only those that change (and compares again, as they
are once locked), updates them, inserts the new ones in e-mail order and writes every outbox row, the events'
JSON put together from a template rendered once per chunk. Two imports (or an import and a lead conversion, which
locks and inserts in the same order) touching the same addresses wait for each other rather than deadlock.
Elsewhere (SQLite, one writer at a time) the ORM does it row by row.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select, text

from services.common.db import is_postgres, new_id, utcnow
from services.common.event_sql import payload_sql
from services.common.outbox import OUTBOX_NOTIFY_CHANNEL
from services.common.uow import UnitOfWork

from .accounts import match_accounts
from .models import PROFILE_FIELDS, Contact
from .tags import TAGS_PER_RECORD

JSON_FIELDS = ("tags", "attributes")
CHANGEABLE = tuple(sorted(PROFILE_FIELDS + JSON_FIELDS))  # in the order crm.contact.updated lists them
# A concurrent writer may create an address between our look-up and our insert, or change or delete a contact
# before we lock it; such rows go through a second pass (the writer has committed by then: we waited for it).
# More passes mean writers keep doing so.
MAX_PASSES = 3


@dataclass
class ChunkOutcome:
    """What a chunk did: counts by outcome, the ids of the contacts it created, the rows it refused."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    created_ids: list[uuid.UUID] = field(default_factory=list)
    refused_rows: list[int] = field(default_factory=list)  # would exceed TAGS_PER_RECORD


def apply_rows(uow: UnitOfWork, rows: list[dict], *, meanwhile: Callable[[], None] | None = None) -> ChunkOutcome:
    """Upsert `rows` (row, email, email_normalized and the given fields; one row per address).

    `meanwhile` (the caller's next piece of work, called once) runs while PostgreSQL works on the rows.
    """
    if not rows or not is_postgres(uow.session):
        outcome = _apply_with_orm(uow, rows) if rows else ChunkOutcome()
        if meanwhile is not None:
            meanwhile()
        return outcome
    return _apply_on_postgres(uow, rows, meanwhile)


# -- PostgreSQL: set-based -------------------------------------------------------------------------------------

_COLUMNS = ("row", "email", "email_normalized") + PROFILE_FIELDS + JSON_FIELDS
_ARRAYS = {"row": "integer[]", "tags": "jsonb[]", "attributes": "jsonb[]"}  # else text[]
# The chunk's rows arrive in the statement itself, one array per column (sent in binary, psycopg's fastest): no
# staging table to create, fill, analyse and drop, and the planner knows the row count from the arrays.
_ROWS = ("SELECT * FROM unnest(" + ", ".join(f"CAST(%({name})b AS {_ARRAYS.get(name, 'text[]')})" for name in _COLUMNS)
         + f") AS r({', '.join(_COLUMNS)})")

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
# A known contact's current (old_) and imported (new_) values, side by side.
_OLD_AND_NEW = ", ".join(f"c.{name} AS old_{name}, r.{name} AS new_{name}" for name in CHANGEABLE)
_LOCKED_AND_NEW = ", ".join(f"c.{name} AS old_{name}, m.new_{name}" for name in CHANGEABLE)

_UPSERT = f"""
WITH import_rows AS MATERIALIZED ({_ROWS}),
matched AS MATERIALIZED (
    -- The rows whose address is known, compared with their contacts as they are, unlocked: a lock writes the
    -- row, and a contact the row leaves as it is needs none (most of a file imported again).
    -- LIMIT 1 keeps the look-up a probe of the e-mail index per row: a table that grew during the import still
    -- has the statistics of a small one, and the planner would otherwise hash all of it for every chunk.
    SELECT k.seq, k.email_normalized, k.row, {", ".join(f"k.new_{name}" for name in CHANGEABLE)},
           {_CHANGED} AS changed
    FROM (SELECT c.seq, r.email_normalized, r.row, {_OLD_AND_NEW}
          FROM import_rows r
          CROSS JOIN LATERAL (SELECT * FROM contacts c WHERE c.email_normalized = r.email_normalized LIMIT 1) c) k
    CROSS JOIN LATERAL (SELECT {_NEW_VALUES}) n
),
known AS (
    -- The contacts the rows change, locked one by one in e-mail order, read again as they are once locked.
    SELECT c.seq, c.id, c.email_normalized, m.row, {_LOCKED_AND_NEW}
    FROM (SELECT * FROM matched WHERE cardinality(changed) > 0 ORDER BY email_normalized) m
    CROSS JOIN LATERAL (SELECT * FROM contacts c WHERE c.seq = m.seq AND c.email_normalized = m.email_normalized
                        FOR UPDATE) c
),
planned AS (
    SELECT k.seq, k.id, k.email_normalized, k.row, n.*, {_CHANGED} AS changed,
           jsonb_array_length(n.tags) > {TAGS_PER_RECORD} AS refused
    FROM known k CROSS JOIN LATERAL (SELECT {_NEW_VALUES}) n
),
updated AS (
    UPDATE contacts c
    SET {", ".join(f"{name} = p.{name}" for name in CHANGEABLE)}, version = c.version + 1, updated_at = %(now)s
    FROM planned p
    WHERE c.seq = p.seq AND cardinality(p.changed) > 0 AND NOT p.refused
    RETURNING c.id, c.email_normalized, c.version, p.changed
),
inserted AS (
    INSERT INTO contacts (id, {", ".join(_COLUMNS[1:])}, account_id, consents, created_at, updated_at, version)
    SELECT gen_random_uuid(), {", ".join(f"r.{name}" for name in _COLUMNS[1:-2])},
           COALESCE(r.tags, '[]'), COALESCE(r.attributes, '{{}}'), a.id, '{{}}', %(now)s, %(now)s, 1
    FROM import_rows r
    -- The rule of accounts.match_accounts, applied as the row goes in: the account of the address domain.
    LEFT JOIN accounts a ON a.domain = split_part(r.email_normalized, '@', -1)
    WHERE NOT EXISTS (SELECT 1 FROM matched m WHERE m.email_normalized = r.email_normalized)
    ORDER BY r.email_normalized
    ON CONFLICT (email_normalized) DO NOTHING
    RETURNING id, email, email_normalized
),
announced AS (
    INSERT INTO outbox (event_id, event_type, payload, created_at, attempts)
    SELECT e.event_id, e.event_type, e.payload, %(now)s, 0
    FROM (SELECT e.event_id, 'crm.contact.created' AS event_type, __created_payload__ AS payload
          FROM (SELECT gen_random_uuid() AS event_id, i.* FROM inserted i) e
          UNION ALL
          SELECT e.event_id, 'crm.contact.updated', __updated_payload__
          FROM (SELECT gen_random_uuid() AS event_id, u.* FROM updated u) e) e
    RETURNING 1
),
-- Every planned row has its outcome: updated, unchanged or refused (the lock held, the update cannot miss).
done AS (
    SELECT email_normalized FROM inserted
    UNION ALL SELECT email_normalized FROM planned
    UNION ALL SELECT email_normalized FROM matched WHERE cardinality(changed) = 0
)
SELECT (SELECT array_agg(id) FROM inserted) AS created_ids,
       (SELECT count(*) FROM updated) AS updated,
       (SELECT count(*) FROM matched WHERE cardinality(changed) = 0)
       + (SELECT count(*) FROM planned WHERE cardinality(changed) = 0) AS unchanged,
       (SELECT array_agg(row) FROM planned WHERE refused AND cardinality(changed) > 0) AS refused_rows,
       -- Rows without an outcome: a concurrent writer created their address, or changed or deleted its contact,
       -- between this statement's look-up and its write. Another pass takes them.
       (SELECT array_agg(r.email_normalized) FROM import_rows r
        WHERE NOT EXISTS (SELECT 1 FROM done d WHERE d.email_normalized = r.email_normalized)) AS left_keys,
       (SELECT count(*) FROM announced) AS announced
"""

# Where an event's payload takes a value of its row: the SQL giving that value's JSON text.
_CREATED_HOLES = {"id": "'\"' || e.event_id || '\"'", "subject": "'\"' || e.id || '\"'",
                  "contact_id": "'\"' || e.id || '\"'", "email": "to_json(e.email)::text"}
_UPDATED_HOLES = {"id": "'\"' || e.event_id || '\"'", "subject": "'\"' || e.id || '\"'",
                  "contact_id": "'\"' || e.id || '\"'", "changed": "to_json(e.changed)::text",
                  "version": "e.version::text"}
_SAMPLES = {"crm.contact.created": {"contact_id": uuid.UUID(int=0), "email": "x@example.com", "lead_id": None,
                                    "matched": False},
            "crm.contact.updated": {"contact_id": uuid.UUID(int=0), "changed": ["email"], "version": 1}}


def _apply_on_postgres(uow: UnitOfWork, rows: list[dict], meanwhile: Callable[[], None] | None) -> ChunkOutcome:
    session = uow.session
    session.flush()  # the statement below must see what the session holds
    # The planner's guesses for the chunk's arrays make the statement look costly enough to compile (JIT), which
    # takes longer than running it.
    session.execute(text("SET LOCAL jit = off"))
    now = utcnow()
    params = {"now": now}
    statement = (_UPSERT
                 .replace("__created_payload__", payload_sql(uow, "crm.contact.created", _SAMPLES["crm.contact.created"], _CREATED_HOLES, now=now, params=params))
                 .replace("__updated_payload__", payload_sql(uow, "crm.contact.updated", _SAMPLES["crm.contact.updated"], _UPDATED_HOLES, now=now, params=params)))
    outcome, announced = ChunkOutcome(), 0
    connection = session.connection().connection.driver_connection
    with connection.cursor() as cursor:
        for _pass in range(MAX_PASSES):
            columns = {name: [row.get(name) for row in rows] for name in _COLUMNS[:-2]}
            columns.update({name: [None if row.get(name) is None else json.dumps(row[name]) for row in rows]
                            for name in JSON_FIELDS})
            # Never prepared: a generic plan would not know how many rows the arrays hold.
            if meanwhile is None:
                result = cursor.execute(statement, {**params, **columns}, prepare=False).fetchone()
            else:
                # Pipeline mode sends the statement without waiting for its answer: `meanwhile` runs as the
                # database works, in this thread (a second one would wait for the GIL to send and receive).
                with connection.pipeline():
                    cursor.execute(statement, {**params, **columns}, prepare=False)
                    meanwhile()
                    meanwhile = None
                    result = cursor.fetchone()
            created_ids, updated, unchanged, refused_rows, left_keys, events = result
            outcome.created_ids += created_ids or []
            outcome.updated += updated
            outcome.unchanged += unchanged
            outcome.refused_rows += refused_rows or []
            announced += events
            if not left_keys:
                break
            left = set(left_keys)
            rows = [row for row in rows if row["email_normalized"] in left]
        else:
            raise RuntimeError(f"{len(rows)} import rows clashed with concurrent writers {MAX_PASSES} times; "
                               "retry the chunk")
    outcome.created = len(outcome.created_ids)
    outcome.refused_rows.sort()
    if announced:
        # As UnitOfWork.commit does for the events it records: the relay publishes as soon as this commits.
        session.execute(text(f"NOTIFY {OUTBOX_NOTIFY_CHANNEL}"))
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
