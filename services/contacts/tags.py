"""Tags on contacts and accounts: short lower-case labels, kept sorted and unique on the record itself.

Stored in the record's JSON `tags` column, so reading a record needs no join and `?tag=` is one containment
test (a GIN index on PostgreSQL). Adding a tag that is there, or removing one that is not, changes nothing:
no new version and no event.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

from marshmallow import ValidationError, fields
from sqlalchemy import select

from services.common.etags import NO_PRECONDITION, Precondition
from services.common.problems import NotFound, Unprocessable
from services.common.uow import UnitOfWork

from .models import Account, Contact
from .tombstones import missing_contact

TAG_MAX = 50
TAGS_PER_RECORD = 100
_TAG = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,49}")
TAG_RULE = ("1-50 characters: lower-case letters a-z, digits, '_', '.', ':' or '-', starting with a letter or "
            "a digit.")


# -- pure rules -------------------------------------------------------------------------------------------

def normalize_tag(value: str) -> str:
    """A tag as stored: trimmed and lower-cased; ValueError when it breaks the rule (TAG_RULE)."""
    tag = value.strip().lower()
    if not _TAG.fullmatch(tag):
        raise ValueError(f"{value!r} is not a tag. {TAG_RULE}")
    return tag


def tag_set(tags: Iterable[str]) -> list[str]:
    """Tags as a record keeps them: sorted and unique; ValueError beyond TAGS_PER_RECORD."""
    kept = sorted(set(tags))
    if len(kept) > TAGS_PER_RECORD:
        raise ValueError(f"A record has at most {TAGS_PER_RECORD} tags; this would make {len(kept)}.")
    return kept


class Tag(fields.String):
    """A tag in a request: normalised (trimmed, lower-case) and checked against the rule."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return normalize_tag(super()._deserialize(value, attr, data, **kwargs))
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class Tags(fields.List):
    """A list of tags in a request body: the record's tag set (sorted, unique, at most TAGS_PER_RECORD)."""

    def __init__(self, **kwargs):
        super().__init__(Tag(), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return tag_set(super()._deserialize(value, attr, data, **kwargs))
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


# -- use cases ----------------------------------------------------------------------------------------------

def _locked_contact(session, contact_id: uuid.UUID) -> Contact:
    contact = session.scalar(select(Contact).where(Contact.id == contact_id).with_for_update())
    if contact is None:
        raise missing_contact(session, contact_id)
    return contact


def _locked_account(session, account_id: uuid.UUID) -> Account:
    account = session.scalar(select(Account).where(Account.id == account_id).with_for_update())
    if account is None:
        raise NotFound(f"No account with id {account_id}.")
    return account


def _retag(record, tags: list[str], precondition: Precondition, what: str) -> bool:
    """Give the locked `record` these tags; True when that changed it (its version goes up)."""
    precondition.check(record.version, required=False, what=what)
    if tags == record.tags:
        return False
    record.tags = tags
    record.version += 1
    return True


def _added(current: list[str], tags: Iterable[str]) -> list[str]:
    try:
        return tag_set([*current, *tags])
    except ValueError as exc:
        raise Unprocessable(str(exc), errors={"tags": [str(exc)]}) from None


def _checked(tag: str) -> str:
    try:
        return normalize_tag(tag)
    except ValueError as exc:
        raise Unprocessable(str(exc), errors={"tag": [str(exc)]}) from None


def _announce(uow: UnitOfWork, contact: Contact) -> None:
    uow.add_event("crm.contact.updated", {"contact_id": contact.id, "changed": ["tags"], "version": contact.version},
                  subject=contact.id)


def add_contact_tags(uow: UnitOfWork, contact_id: uuid.UUID, tags: Iterable[str], *,
                     precondition: Precondition = NO_PRECONDITION) -> Contact:
    """Add tags to a contact; `crm.contact.updated` (changed: tags) only when one was new."""
    with uow:
        contact = _locked_contact(uow.session, contact_id)
        if _retag(contact, _added(contact.tags, tags), precondition, f"contact {contact_id}"):
            _announce(uow, contact)
            uow.commit()
        return contact


def remove_contact_tag(uow: UnitOfWork, contact_id: uuid.UUID, tag: str, *,
                       precondition: Precondition = NO_PRECONDITION) -> Contact:
    """Remove a tag from a contact; removing one it does not have changes nothing."""
    tag = _checked(tag)
    with uow:
        contact = _locked_contact(uow.session, contact_id)
        if _retag(contact, [t for t in contact.tags if t != tag], precondition, f"contact {contact_id}"):
            _announce(uow, contact)
            uow.commit()
        return contact


def add_account_tags(uow: UnitOfWork, account_id: uuid.UUID, tags: Iterable[str], *,
                     precondition: Precondition = NO_PRECONDITION) -> Account:
    """Add tags to an account (accounts publish no events)."""
    with uow:
        account = _locked_account(uow.session, account_id)
        if _retag(account, _added(account.tags, tags), precondition, f"account {account_id}"):
            uow.commit()
        return account


def remove_account_tag(uow: UnitOfWork, account_id: uuid.UUID, tag: str, *,
                       precondition: Precondition = NO_PRECONDITION) -> Account:
    """Remove a tag from an account; removing one it does not have changes nothing."""
    tag = _checked(tag)
    with uow:
        account = _locked_account(uow.session, account_id)
        if _retag(account, [t for t in account.tags if t != tag], precondition, f"account {account_id}"):
            uow.commit()
        return account
