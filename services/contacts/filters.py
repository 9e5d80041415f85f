"""The contact list's filters, as one SELECT: shared by the list, the CSV export and the analytics filters."""
from __future__ import annotations

from sqlalchemy import Select, func, or_, select

from services.common.emails import normalize_email

from .models import Contact


def contacts_statement(*, email: str | None = None, q: str | None = None) -> Select:
    """SELECT contacts matching every given filter: exact e-mail, search term (name, e-mail, company)."""
    stmt = select(Contact)
    if email:
        stmt = stmt.where(Contact.email_normalized == normalize_email(email))
    if q:
        full_name = func.coalesce(Contact.first_name, "").concat(" ").concat(func.coalesce(Contact.last_name, ""))
        stmt = stmt.where(or_(full_name.icontains(q, autoescape=True),
                              Contact.email.icontains(q, autoescape=True),
                              Contact.company.icontains(q, autoescape=True)))
    return stmt
