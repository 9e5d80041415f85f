"""The customer-record fields a contact's create and PATCH take besides its profile: account, tags, attributes.

service.create_contact and service.update_contact call these; each reads the database only for the fields the
request sends (the account for `account_id`, the definitions for `attributes`), and the domain's account for
a new contact that names none.
"""
from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session

from .accounts import account_ids_for_emails, require_account
from .attributes import checked_values, merged
from .models import Contact


def new_record_fields(session: Session, data: Mapping, email_normalized: str) -> dict:
    """Column values for a new contact: its account (as sent, else its e-mail domain's), tags and attributes."""
    values = {}
    if "account_id" in data:  # sent, even as null: the caller decides, not the domain
        if data["account_id"] is not None:
            require_account(session, data["account_id"])
        values["account_id"] = data["account_id"]
    else:
        values["account_id"] = account_ids_for_emails(session, [email_normalized]).get(email_normalized)
    if data.get("tags"):
        values["tags"] = list(data["tags"])
    if data.get("attributes"):
        values["attributes"] = merged({}, checked_values(session, data["attributes"]))
    return values


def changed_record_fields(session: Session, contact: Contact, requested: Mapping) -> dict:
    """The record fields a PATCH changes on `contact`: a new account, tag set or attribute values (null removes)."""
    changes = {}
    if "account_id" in requested and requested["account_id"] != contact.account_id:
        if requested["account_id"] is not None:
            require_account(session, requested["account_id"])
        changes["account_id"] = requested["account_id"]
    if "tags" in requested and list(requested["tags"]) != contact.tags:
        changes["tags"] = list(requested["tags"])
    if requested.get("attributes"):
        attributes = merged(contact.attributes, checked_values(session, requested["attributes"]))
        if attributes != contact.attributes:
            changes["attributes"] = attributes
    return changes
