"""The contact list's filters, as one SELECT: shared by the list, the CSV export and the analytics filters."""
from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from services.common.emails import normalize_email

from .analytics.contact_measures import measure_condition
from .attributes import attribute_filters
from .dialects import json_contains
from .models import Contact

# The list's `sort=` names and what each orders by; the e-mail case-insensitively, as it is matched.
SORT_COLUMNS = {"created_at": Contact.created_at, "updated_at": Contact.updated_at, "last_name": Contact.last_name,
                "first_name": Contact.first_name, "email": Contact.email_normalized, "company": Contact.company}


def contacts_statement(*, email: str | None = None, q: str | None = None, tag: Sequence[str] | None = None,
                       account_id: uuid.UUID | None = None, attr: Mapping[str, object] | None = None,
                       consent: str | None = None, analytics_currency: str | None = None,
                       abc_class: Sequence[str] | None = None, rfm_segment: Sequence[str] | None = None,
                       quadrant: Sequence[str] | None = None, pyramid_level: Sequence[str] | None = None,
                       stage: Sequence[str] | None = None, clv_min: Decimal | None = None,
                       clv_max: Decimal | None = None, status: str | None = None) -> Select:
    """SELECT contacts matching every given filter.

    Exact e-mail; search term (name, e-mail, company); every one of `tag` (normalised tags); the account;
    custom attribute values in their stored form (`checked_filters` turns `?attr.<name>=` text into those);
    a consent currently granted (`email:marketing`); the status (active, terminated); the measures in `analytics_currency`'s current snapshot
    (any of each class filter's values, CLV within [clv_min, clv_max]); with no snapshot none match.
    """
    stmt = select(Contact)
    if email:
        stmt = stmt.where(Contact.email_normalized == normalize_email(email))
    if q:
        full_name = func.coalesce(Contact.first_name, "").concat(" ").concat(func.coalesce(Contact.last_name, ""))
        stmt = stmt.where(or_(full_name.icontains(q, autoescape=True),
                              Contact.email.icontains(q, autoescape=True),
                              Contact.company.icontains(q, autoescape=True)))
    if tag:
        stmt = stmt.where(json_contains(Contact.tags, sorted(set(tag))))
    if account_id is not None:
        stmt = stmt.where(Contact.account_id == account_id)
    if attr:
        stmt = stmt.where(json_contains(Contact.attributes, dict(attr)))
    if status:
        stmt = stmt.where(Contact.status == status)
    if consent:
        stmt = stmt.where(Contact.consents[(consent, "status")].as_string() == "granted")
    measures = measure_condition(Contact.id, analytics_currency, clv_min=clv_min, clv_max=clv_max, classes={
        "abc_class": abc_class, "rfm_segment": rfm_segment, "quadrant": quadrant, "pyramid_level": pyramid_level,
        "stage": stage})
    if measures is not None:
        stmt = stmt.where(measures)
    return stmt


def checked_filters(session: Session, filters: Mapping) -> dict:
    """The list's query arguments ready for contacts_statement: `attr` values typed by their definitions.

    The definitions are read (one query) only when there is an `attr` filter; a bad one is a 422 naming
    `attr.<name>`.
    """
    checked = dict(filters)
    if checked.get("attr"):
        checked["attr"] = attribute_filters(session, checked["attr"])
    return checked
