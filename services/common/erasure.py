"""Erasure (GDPR art. 17), the part every service shares: what a service erases, and its message history.

Contacts erases a person and publishes `crm.contact.erased`; every service that keeps personal data handles it
and answers `crm.erasure.completed` (docs/api-contacts.md#erasure). Each service keeps ONE explicit list of its
tables (DESIGN §8): an `Erase` step for every table that holds the person, a reason for every table kept as it
is; `unlisted_tables` lets a test fail when a table is on neither list. The message tables every service has
(outbox, inbox, idempotency keys) are handled here, the same way everywhere: published outbox rows and stored
responses that name the person are deleted; the inbox holds event ids only.

Messages are found by text: a JSON string equal to one of the person's "needles" (an e-mail address as given
or normalised, the contact id, a lead id), quoted, so `a@b.co` does not match `xa@b.com`. That is a scan of the
outbox and the idempotency keys (PostgreSQL searches the payload text; nothing indexes it), acceptable once per
erasure: handlers take erasures in batches and search for every person of a batch in one statement per table.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import MetaData, Table, delete, false, or_, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from .broker import Bindings
from .emails import InvalidEmail, normalize_email

ERASED = "crm.contact.erased"
COMPLETED = "crm.erasure.completed"
# The tables `messaging_models` and `idempotency_model` give every service, handled by `purge_messages`.
MESSAGE_TABLES = frozenset({"outbox", "inbox", "idempotency_keys"})


@dataclass(frozen=True)
class People:
    """The people being erased, by everything other records name them by: one erasure's, or a batch's."""

    contact_ids: frozenset[uuid.UUID] = frozenset()
    lead_ids: frozenset[uuid.UUID] = frozenset()
    emails: frozenset[str] = frozenset()  # as given; `emails_normalized` has their matching keys
    record_ids: frozenset[uuid.UUID] = frozenset()  # ids of the people's records in one service (loyalty members)

    @classmethod
    def of(cls, erasures: Iterable[Mapping]) -> People:
        """The people of some `crm.contact.erased` payloads."""
        erasures = list(erasures)
        return cls(contact_ids=frozenset(contact_id for e in erasures
                                         for contact_id in (e["contact_id"], *(e.get("merged_ids") or ()))),
                   lead_ids=frozenset(lead_id for e in erasures for lead_id in e.get("lead_ids") or ()),
                   emails=frozenset(e["email"] for e in erasures if e.get("email")))

    def with_(self, *, lead_ids: Iterable[uuid.UUID] = (), emails: Iterable[str] = (),
              record_ids: Iterable[uuid.UUID] = ()) -> People:
        """The same people, also known by these ids and addresses (found in a service's own records)."""
        return People(self.contact_ids, self.lead_ids | frozenset(lead_ids), self.emails | frozenset(emails),
                      self.record_ids | frozenset(record_ids))

    @property
    def emails_normalized(self) -> frozenset[str]:
        keys = set()
        for email in self.emails:
            try:
                keys.add(normalize_email(email))
            except InvalidEmail:
                keys.add(email.strip().lower())  # stored before today's rules: matched as it was kept
        return frozenset(keys)

    def needles(self) -> frozenset[str]:
        """Every value a message naming one of these people contains as a JSON string."""
        ids = {str(value) for value in self.contact_ids | self.lead_ids | self.record_ids}
        return frozenset(ids | self.emails | self.emails_normalized)


@dataclass(frozen=True)
class Erase:
    """What an erasure does to one table: delete the people's rows (`values` None), or anonymise them in place.

    `rows(table, people)` selects the rows; `values(table)` gives the columns to overwrite (SQL expressions may
    use the row's own columns), for tables whose rows must stay so that counts and balances stay right.
    """

    table: str
    rows: Callable[[Table, People], ColumnElement[bool]]
    values: Callable[[Table], Mapping[str, Any]] | None = None
    why: str = ""

    def run(self, session: Session, metadata: MetaData, people: People) -> int:
        """Erase the people's rows of this table in one statement; the number of rows."""
        table = metadata.tables[self.table]
        where = self.rows(table, people)
        if self.values is None:
            stmt = delete(table).where(where)
        else:
            stmt = update(table).where(where).values(dict(self.values(table)))
        return session.execute(stmt.execution_options(synchronize_session=False)).rowcount


def erase_tables(session: Session, metadata: MetaData, steps: Iterable[Erase], people: People) -> dict[str, int]:
    """Run every step (one statement each, in order); rows erased per table."""
    return {step.table: step.run(session, metadata, people) for step in steps}


def unlisted_tables(metadata: MetaData, steps: Iterable[Erase], kept: Mapping[str, str]) -> set[str]:
    """Tables of `metadata` that a service's erasure list neither erases nor keeps for a stated reason."""
    listed = {step.table for step in steps} | set(kept) | MESSAGE_TABLES
    return set(metadata.tables) - listed


def unknown_tables(metadata: MetaData, steps: Iterable[Erase], kept: Mapping[str, str]) -> set[str]:
    """Tables a service's erasure list names that its metadata does not have (a typo would erase nothing)."""
    return ({step.table for step in steps} | set(kept)) - set(metadata.tables)


# -- the message history ------------------------------------------------------------------------------------

def json_forms(value: str) -> set[str]:
    """`value` as a quoted JSON string, with and without \\u escapes (json.dumps escapes by default; not all writers)."""
    return {json.dumps(value), json.dumps(value, ensure_ascii=False)}


def _like_pattern(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def containing(column, texts: Iterable[str]) -> ColumnElement[bool]:
    """Rows whose text `column` contains one of `texts` anywhere (case-insensitive; `%` and `_` are literal)."""
    patterns = sorted({_like_pattern(text) for text in texts if text})
    if not patterns:
        return false()
    return or_(*(column.ilike(pattern, escape="\\") for pattern in patterns))


def naming(column, needles: Iterable[str]) -> ColumnElement[bool]:
    """Rows whose JSON text `column` holds one of `needles` as a whole JSON string (case-insensitive)."""
    return containing(column, {form for needle in needles for form in json_forms(needle)})


def purge_messages(session: Session, outbox_model, idempotency_model, people: People, *,
                   keep_types: Iterable[str] = (), sent_before: int | None = None) -> dict[str, int]:
    """Delete the published outbox rows and stored idempotent responses that name `people`; rows per table.

    Unpublished rows stay: they are events still to be delivered. `sent_before` (an outbox seq) also takes the
    unpublished rows before it: the relay sends oldest first, so a row before an event that has come back was
    sent too, and only its mark may lag (a consumer can beat the relay's confirm). `keep_types` spares events
    that must outlive this purge (contacts keeps `crm.contact.erased` until every service has confirmed it).
    """
    needles = people.needles()
    outbox = outbox_model.__table__
    sent = outbox.c.published_at.is_not(None)
    if sent_before is not None:
        sent = or_(sent, outbox.c.seq < sent_before)
    doomed = delete(outbox).where(sent, naming(outbox.c.payload, needles))
    keep_types = list(keep_types)
    if keep_types:
        doomed = doomed.where(outbox.c.event_type.not_in(keep_types))
    keys = idempotency_model.__table__
    return {
        "outbox": session.execute(doomed).rowcount,
        # The request is kept only as a hash; the response is what can name the person.
        "idempotency_keys": session.execute(delete(keys).where(naming(keys.c.response_body, needles))).rowcount,
    }


# -- confirmations ------------------------------------------------------------------------------------------

def confirming_services(bindings: Bindings) -> tuple[str, ...]:
    """The services that must confirm an erasure: those whose handlers take `crm.contact.erased` (sorted)."""
    return tuple(sorted(service for service, types in bindings.items() if ERASED in set(types)))


def service_name(uow) -> str:
    """The name of the service a unit of work belongs to (its events' source is `/services/<name>`)."""
    return uow.source.rstrip("/").rsplit("/", 1)[-1]


def confirm_erasures(uow, erasures: Iterable[Mapping], *, causes: Iterable[Mapping] | None = None) -> None:
    """Record `crm.erasure.completed` from this service for each erasure (`causes`: add_event keywords of each)."""
    erasures = list(erasures)
    causes = list(causes) if causes is not None else [{}] * len(erasures)
    service = service_name(uow)
    for erasure, cause in zip(erasures, causes, strict=True):
        uow.add_event(COMPLETED, {"erasure_id": erasure["erasure_id"], "contact_id": erasure["contact_id"],
                                  "service": service}, subject=erasure["contact_id"], **cause)

