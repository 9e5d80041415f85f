"""Accounts (companies) and how contacts join them: by `account_id`, or by the domain of their e-mail address.

An account's domain is unique among accounts and never a free-mail provider's (crm_plugins.mail_domains):
gmail.com says nothing about an employer. A contact created without an explicit `account_id` joins the
account of its e-mail domain; an account that gets a domain takes in that domain's contacts without one.
Nothing ever moves a contact that already has an account.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from crm_plugins.mail_domains import is_free_mail
from sqlalchemy import bindparam, func, or_, select, true, update
from sqlalchemy.orm import Session

from services.common.db import new_id, utcnow
from services.common.emails import InvalidEmail, email_domain as address_domain
from services.common.etags import NO_PRECONDITION, Precondition
from services.common.pagination import DEFAULT_LIMIT, paginate
from services.common.problems import Conflict, NotFound, Unprocessable
from services.common.uow import UnitOfWork, insert_or_reread

from .dialects import email_domain, json_contains
from .filters import contacts_statement
from .models import (
    ADDRESS_FIELDS,
    Account,
    Contact,
    ContactPurchaseMetric,
    ContactPurchaseSummary,
)
from .purchase_facts import TOTALS, Spend

READ_SCOPE = "contacts:read"
PLAIN_FIELDS = ("name", "domain", "industry", "size_band", "owner", "tags")
SORTS = {"name": Account.name, "domain": Account.domain, "created_at": Account.created_at,
         "updated_at": Account.updated_at}


# -- pure rules -------------------------------------------------------------------------------------------

def normalize_domain(value: str, *, allow_free_mail: bool = False) -> str:
    """A domain as accounts keep it: lower-case IDNA ASCII, no trailing dot; ValueError when it is not one.

    A free-mail domain is refused unless `allow_free_mail` (a filter may name one; it then finds nothing).
    """
    text = value.strip().rstrip(".")
    if not text or "@" in text or "/" in text or text.startswith("["):
        raise ValueError("Give a domain name such as example.com (no scheme, path or e-mail address).")
    try:
        domain = address_domain(f"x@{text}")
    except InvalidEmail as exc:
        raise ValueError(str(exc)) from None
    if "." not in domain:
        raise ValueError("Give a full domain name such as example.com.")
    if not allow_free_mail and is_free_mail(domain):
        raise ValueError(f"{domain} is a free mail provider: its addresses say nothing about an employer.")
    return domain


def _domain_of(email_normalized: str) -> str:
    return email_normalized.rpartition("@")[2]


def account_values(data: Mapping) -> dict:
    """Column values from a request body: the address block spread over its columns (null clears them all)."""
    values = {name: data[name] for name in PLAIN_FIELDS if name in data}
    if "address" in data:
        address = data["address"]
        if address is None:
            values.update(dict.fromkeys(ADDRESS_FIELDS))
        else:
            values.update({name: address[name] for name in ADDRESS_FIELDS if name in address})
    return values


# -- contacts joining accounts ------------------------------------------------------------------------------

def account_ids_for_emails(session: Session, emails_normalized: Iterable[str]) -> dict[str, uuid.UUID]:
    """The account each address's domain belongs to, by normalised address; free mail is never looked up.

    One query for all of them, none when every domain is free mail.
    """
    by_domain: dict[str, list[str]] = {}
    for email in emails_normalized:
        domain = _domain_of(email)
        if domain and not is_free_mail(domain):
            by_domain.setdefault(domain, []).append(email)
    if not by_domain:
        return {}
    rows = session.execute(select(Account.domain, Account.id).where(Account.domain.in_(sorted(by_domain))))
    return {email: account_id for domain, account_id in rows for email in by_domain[domain]}


def require_account(session: Session, account_id: uuid.UUID) -> None:
    """422 naming `account_id` when no account has this id (a contact cannot join an account that is not there)."""
    if session.scalar(select(Account.seq).where(Account.id == account_id)) is None:
        raise Unprocessable(f"No account with id {account_id}.", errors={"account_id": ["No account has this id."]})


_CONTACTS = Contact.__table__
_ACCOUNTS = Account.__table__

# One UPDATE ... FROM accounts for a batch of contacts; accounts are matched by their unique domain.
_MATCH = (update(_CONTACTS)
          .where(_CONTACTS.c.id.in_(bindparam("contact_ids", expanding=True)), _CONTACTS.c.account_id.is_(None),
                 _ACCOUNTS.c.domain == email_domain(_CONTACTS.c.email_normalized))
          .values(account_id=_ACCOUNTS.c.id, version=_CONTACTS.c.version + 1, updated_at=bindparam("now")))

# The contacts without an account whose address is at a domain (PostgreSQL: a partial expression index).
_ATTACH = (update(_CONTACTS)
           .where(_CONTACTS.c.account_id.is_(None), email_domain(_CONTACTS.c.email_normalized) == bindparam("domain"))
           .values(account_id=bindparam("account_id"), version=_CONTACTS.c.version + 1, updated_at=bindparam("now"))
           .returning(_CONTACTS.c.id, _CONTACTS.c.version))


def match_accounts(session: Session, contact_ids: Iterable[uuid.UUID]) -> None:
    """Join the given contacts that have no account to the account of their e-mail domain, in one UPDATE.

    For bulk writers (the CSV import, after each chunk). Each contact that joins gets version + 1; no event is
    recorded here. It is a Core UPDATE: Contact objects of these ids already in `session` keep their old
    `account_id` and `version` until refreshed.
    """
    ids = list(contact_ids)
    if ids:
        session.execute(_MATCH, {"contact_ids": ids, "now": utcnow()})


def _attach_domain(uow: UnitOfWork, account: Account) -> None:
    """Take in the contacts without an account at the account's domain; crm.contact.updated for each."""
    rows = uow.session.execute(_ATTACH, {"domain": account.domain, "account_id": account.id, "now": utcnow()}).all()
    for contact_id, version in rows:
        uow.add_event("crm.contact.updated", {"contact_id": contact_id, "changed": ["account_id"], "version": version},
                      subject=contact_id)


# -- use cases ----------------------------------------------------------------------------------------------

def _by_domain(session: Session, domain: str | None) -> Account | None:
    if domain is None:
        return None
    return session.scalar(select(Account).where(Account.domain == domain))


def _duplicate(holder: Account) -> Conflict:
    return Conflict(f"Account {holder.id} already has the domain {holder.domain}.", existing_account_id=str(holder.id)
                    ).for_readers(READ_SCOPE, otherwise="Another account already has this domain.")


def _locked(session: Session, account_id: uuid.UUID) -> Account:
    account = session.scalar(select(Account).where(Account.id == account_id).with_for_update())
    if account is None:
        raise NotFound(f"No account with id {account_id}.")
    return account


def create_account(uow: UnitOfWork, data: Mapping) -> Account:
    """Create an account; a domain another account has is a 409. Its domain's unassigned contacts join it."""
    values = account_values(data)
    with uow:
        session = uow.session
        holder = _by_domain(session, values.get("domain"))
        if holder is not None:
            raise _duplicate(holder)
        account = Account(id=new_id(), **{"tags": [], **values})
        # A concurrent create may take the domain first: its insert holds ours until it commits.
        holder = insert_or_reread(session, account, reread=lambda: _by_domain(session, account.domain))
        if holder is not None:
            raise _duplicate(holder)
        if account.domain:
            _attach_domain(uow, account)
        uow.commit()
        return account


def update_account(uow: UnitOfWork, account_id: uuid.UUID, requested: Mapping, *,
                   precondition: Precondition = NO_PRECONDITION) -> Account:
    """Change some fields of an account (If-Match optional); a new domain takes in its unassigned contacts."""
    values = account_values(requested)
    with uow:
        session = uow.session
        account = _locked(session, account_id)
        precondition.check(account.version, required=False, what=f"account {account_id}")
        changes = {name: value for name, value in values.items() if getattr(account, name) != value}
        if not changes:
            return account
        if changes.get("domain"):
            holder = _by_domain(session, changes["domain"])
            if holder is not None:
                raise _duplicate(holder)
        for name, value in changes.items():
            setattr(account, name, value)
        account.version += 1
        holder = insert_or_reread(session, reread=lambda: _by_domain(session, account.domain))
        if holder is not None:
            raise _duplicate(holder)
        if changes.get("domain"):
            _attach_domain(uow, account)
        uow.commit()
        return account


def list_accounts(uow: UnitOfWork, *, limit: int, cursor: str | None, sort: str | None = None,
                  tag: list[str] | None = None, domain: str | None = None, q: str | None = None) -> dict:
    """Accounts newest first (or by `sort`), narrowed by tags (all of them), exact domain and a search term."""
    stmt = select(Account)
    if tag:
        stmt = stmt.where(json_contains(Account.tags, tag))
    if domain:
        stmt = stmt.where(Account.domain == domain)
    if q:
        stmt = stmt.where(or_(Account.name.icontains(q, autoescape=True), Account.domain.icontains(q, autoescape=True)))
    with uow:
        return paginate(uow.session, stmt, Account.seq, limit=limit, cursor=cursor, sort=sort, columns=SORTS)


_SUMMARY = ContactPurchaseSummary.__table__
_METRICS = ContactPurchaseMetric.__table__
_ACCOUNT_ID = bindparam("account_id")

# The roll-up over the account's contacts, summed by the database: one row, even without contacts.
_ROLLUP = (select(func.count(_CONTACTS.c.id).label("contact_count"),
                  func.coalesce(func.sum(_SUMMARY.c.purchase_count), 0).label("purchase_count"),
                  func.min(_SUMMARY.c.first_purchase_at).label("first_purchase_at"),
                  func.max(_SUMMARY.c.last_purchase_at).label("last_purchase_at"))
           .select_from(_CONTACTS.outerjoin(_SUMMARY, _SUMMARY.c.contact_id == _CONTACTS.c.id))
           .where(_CONTACTS.c.account_id == _ACCOUNT_ID)
           .subquery("rollup"))
# Spend per currency (NUMERIC sums on PostgreSQL; SQLite, which keeps amounts as text, sums in floating point
# and the Money type rounds back to four places).
_SPEND = (select(_METRICS.c.currency, *(func.sum(_METRICS.c[name]).label(name) for name in TOTALS))
          .select_from(_METRICS.join(_CONTACTS, _CONTACTS.c.id == _METRICS.c.contact_id))
          .where(_CONTACTS.c.account_id == _ACCOUNT_ID)
          .group_by(_METRICS.c.currency)
          .subquery("spend"))
# The account, its roll-up and one row per currency in one round trip (as the contact's own details).
_ACCOUNT_DETAILS = (
    select(*_ACCOUNTS.columns, _ROLLUP.c.contact_count, _ROLLUP.c.purchase_count, _ROLLUP.c.first_purchase_at,
           _ROLLUP.c.last_purchase_at, *(_SPEND.c[name].label(f"spend_{name}") for name in ("currency", *TOTALS)))
    .select_from(_ACCOUNTS.join(_ROLLUP, true()).outerjoin(_SPEND, true()))
    .where(_ACCOUNTS.c.id == _ACCOUNT_ID)
    .order_by(_SPEND.c.currency)
)
_ACCOUNT_KEYS = tuple(column.key for column in _ACCOUNTS.columns)


def get_account_details(uow: UnitOfWork, account_id: uuid.UUID) -> dict:
    """One account with its roll-up (contacts, purchases, spend per currency) and its contacts' first page."""
    with uow:
        session = uow.session
        rows = session.execute(_ACCOUNT_DETAILS, {"account_id": account_id}).all()
        if not rows:
            raise NotFound(f"No account with id {account_id}.")
        contacts = paginate(session, contacts_statement(account_id=account_id), Contact.seq,
                            limit=DEFAULT_LIMIT, cursor=None)
    first = rows[0]
    return {
        **{key: first._mapping[key] for key in _ACCOUNT_KEYS},
        "address": {name: first._mapping[name] for name in ADDRESS_FIELDS},
        "contact_count": first.contact_count,
        "purchases": {
            "count": first.purchase_count,
            "first_purchase_at": first.first_purchase_at,
            "last_purchase_at": first.last_purchase_at,
            "total_spend": [Spend(row.spend_currency, *(row._mapping[f"spend_{name}"] for name in TOTALS)).view()
                            for row in rows if row.spend_currency is not None],
        },
        "contacts": contacts,
    }
