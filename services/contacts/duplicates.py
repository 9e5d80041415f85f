"""Duplicate candidates: pairs of contacts that are probably one person, scored, with the evidence for each.

Blocking, not all pairs: SQL gives every contact a few normalised keys (the last digits of its phone, its name at
its account, its name at its company, its e-mail without +tag and gmail dots, its e-mail's local part) and keeps
only the keys two or more contacts share (GROUP BY ... HAVING count(*) > 1), in one round trip. Python then
compares the contacts within each block: phone numbers in E.164 (the `phonenumbers` library), the kind of e-mail
variant, and a shared name as supporting evidence. The work is bounded: a key shared by more than MAX_BLOCK
contacts says little (a common name at a large company, `info@`) and is skipped, and at most MAX_BLOCKS blocks,
the strongest kinds first, are read per call.
"""
from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import reduce

import phonenumbers
from sqlalchemy import (
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from services.common.problems import Unprocessable
from services.common.uow import UnitOfWork

from .models import Contact
from .tombstones import missing_contact

MAX_BLOCK = 20  # contacts sharing one key; a larger block is too common to be evidence
MAX_BLOCKS = 500  # blocks read per call (at most MAX_BLOCKS * MAX_BLOCK contacts)
PHONE_TAIL = 7  # phone numbers are blocked on their last digits, which the national and + forms share
GMAIL_DOMAINS = ("gmail.com", "googlemail.com")
# Shared mailboxes: the same local part at two companies is no evidence of one person.
ROLE_LOCAL_PARTS = ("info", "sales", "contact", "admin", "office", "support", "hello", "mail", "team", "service",
                    "billing", "accounts", "hr", "jobs", "marketing", "noreply", "no-reply", "webmaster",
                    "postmaster", "enquiries", "help", "kontakt")

# Reasons and their weights (0-100); a pair's score combines them (combined_score).
SAME_GMAIL_ADDRESS = "same_gmail_address"  # one gmail mailbox: dots, +tag and googlemail.com aside
SAME_ADDRESS_WITHOUT_TAG = "same_address_without_tag"  # one address once the +tag is dropped
SAME_PHONE = "same_phone"  # one number in E.164
SAME_NAME_AND_ACCOUNT = "same_name_and_account"
SAME_NAME_AND_COMPANY = "same_name_and_company"
SAME_LOCAL_PART = "same_local_part"  # the same local part at another domain
SAME_NAME = "same_name"  # supporting only: never a candidate on its own
WEIGHTS = {SAME_GMAIL_ADDRESS: 95, SAME_ADDRESS_WITHOUT_TAG: 90, SAME_PHONE: 80, SAME_NAME_AND_ACCOUNT: 75,
           SAME_NAME_AND_COMPANY: 70, SAME_LOCAL_PART: 40, SAME_NAME: 35}
# Blocking keys, strongest first: when MAX_BLOCKS cuts, it cuts the weakest.
KINDS = ("email", "phone", "name_account", "name_company", "email_local")


# -- pure rules -------------------------------------------------------------------------------------------

def combined_score(weights: Iterable[int]) -> int:
    """0-100: the chance that at least one piece of evidence is right, each weight read as a probability."""
    doubt = reduce(lambda left, weight: left * (1 - weight / 100), weights, 1.0)
    return round(100 * (1 - doubt))


def phone_key(raw: str | None, region: str | None) -> str | None:
    """The number in E.164 (+4930123456); without a country code and no region: `national:<digits>`.

    A number written without + is read in `region` (CRM_DEFAULT_PHONE_REGION). Without one, two such numbers
    match digit for digit (they are taken to be in the same, unknown, country), and never a number with +.
    """
    if not raw or not raw.strip():
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        digits = "".join(ch for ch in raw if ch.isdigit())
        return f"national:{digits}" if region is None and not raw.strip().startswith("+") and digits else None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def full_name(contact) -> str | None:
    """First and last name, trimmed and lower-cased, when both are there (as the SQL keys compute them)."""
    first, last = (contact.first_name or "").strip().lower(), (contact.last_name or "").strip().lower()
    return f"{first} {last}" if first and last else None


def _domain(email: str) -> str:
    return email.partition("@")[2]


def email_variant(a: str, b: str) -> str:
    """The reason two addresses in one e-mail block are one mailbox."""
    both_gmail = _domain(a) in GMAIL_DOMAINS and _domain(b) in GMAIL_DOMAINS
    return SAME_GMAIL_ADDRESS if both_gmail else SAME_ADDRESS_WITHOUT_TAG


# -- the blocking keys, in SQL ----------------------------------------------------------------------------

class _mailbox(FunctionElement):
    """An address's local part before any +tag (`ann` of `ann+news@example.com`)."""

    type = String()
    inherit_cache = True


class _domain_of(FunctionElement):
    """An address's domain (after its first `@`, as the local part is what comes before it)."""

    type = String()
    inherit_cache = True


class _digits(FunctionElement):
    """A phone number's digits only."""

    type = String()
    inherit_cache = True


@compiles(_mailbox, "postgresql")
def _mailbox_postgresql(element, compiler, **kw):
    return f"split_part(split_part({compiler.process(element.clauses, **kw)}, '@', 1), '+', 1)"


@compiles(_mailbox)
def _mailbox_sqlite(element, compiler, **kw):
    address = compiler.process(element.clauses, **kw)
    local = f"substr({address}, 1, instr({address}, '@') - 1)"
    return f"CASE WHEN instr({local}, '+') > 0 THEN substr({local}, 1, instr({local}, '+') - 1) ELSE {local} END"


@compiles(_domain_of, "postgresql")
def _domain_postgresql(element, compiler, **kw):
    return f"split_part({compiler.process(element.clauses, **kw)}, '@', 2)"


@compiles(_domain_of)
def _domain_sqlite(element, compiler, **kw):
    address = compiler.process(element.clauses, **kw)
    return f"substr({address}, instr({address}, '@') + 1)"


@compiles(_digits)
def _digits_any(element, compiler, **kw):
    # The characters the phone validator allows besides digits (schemas.PHONE); on PostgreSQL seven replace()
    # calls cost a fifth of one regexp_replace().
    return reduce(lambda expr, ch: f"replace({expr}, '{ch}', '')", " ()./-+", compiler.process(element.clauses, **kw))


def _lower_trim(column):
    return func.lower(func.trim(column))


def _keys_statement():
    """SELECT (contact_id, kind, key) for every contact and blocking key it has."""
    mailbox, domain = _mailbox(Contact.email_normalized), _domain_of(Contact.email_normalized)
    digits = _digits(Contact.phone)
    name = _lower_trim(Contact.first_name) + " " + _lower_trim(Contact.last_name)
    has_name = and_(func.length(func.trim(Contact.first_name)) > 0, func.length(func.trim(Contact.last_name)) > 0)
    gmail = domain.in_(GMAIL_DOMAINS)

    def keyed(kind: str, key, *conditions):
        return select(Contact.id.label("contact_id"), literal_column(f"'{kind}'").label("kind"),
                      cast(key, String).label("key")).where(*conditions)

    return union_all(
        keyed("email", case((gmail, func.replace(mailbox, ".", "") + "@gmail.com"), else_=mailbox + "@" + domain),
              func.length(mailbox) > 0),
        keyed("phone", func.substr(digits, func.length(digits) - (PHONE_TAIL - 1), PHONE_TAIL),
              func.length(digits) >= PHONE_TAIL),
        keyed("name_account", name + " " + cast(Contact.account_id, String), has_name, Contact.account_id.is_not(None)),
        keyed("name_company", name + " " + _lower_trim(Contact.company), has_name,
              func.length(func.trim(Contact.company)) > 0),
        keyed("email_local", mailbox, func.length(mailbox) > 0, mailbox.not_in(ROLE_LOCAL_PARTS)),
    ).cte("keys")


def _blocks_statement(*, of_one_contact: bool):
    """The shared keys (at most MAX_BLOCKS, strongest kinds first) with their contacts: one row per member.

    With `of_one_contact`, only the keys of the contact bound as `contact_id`.
    """
    keys = _keys_statement()
    blocks = (select(keys.c.kind, keys.c.key).group_by(keys.c.kind, keys.c.key)
              .having(func.count().between(2, MAX_BLOCK)))
    if of_one_contact:
        own = select(keys.c.kind, keys.c.key).where(keys.c.contact_id == bindparam("contact_id"))
        blocks = blocks.where(tuple_(keys.c.kind, keys.c.key).in_(own))
    rank = case({kind: index for index, kind in enumerate(KINDS)}, value=keys.c.kind)
    blocks = blocks.order_by(rank, keys.c.key).limit(MAX_BLOCKS).subquery("blocks")
    members = keys.alias("members")
    return (select(blocks.c.kind, blocks.c.key, Contact)
            .join(members, and_(members.c.kind == blocks.c.kind, members.c.key == blocks.c.key))
            .join(Contact, Contact.id == members.c.contact_id)
            .order_by(blocks.c.kind, blocks.c.key, Contact.seq))


# Built once: the statements are the same on every call, only `contact_id` changes.
_BLOCKS = _blocks_statement(of_one_contact=False)
_BLOCKS_OF_ONE = _blocks_statement(of_one_contact=True)
_EXISTS = select(Contact.seq).where(Contact.id == bindparam("contact_id"))


# -- candidates -------------------------------------------------------------------------------------------

@dataclass
class Candidate:
    """Two contacts that are probably one person: `first` is the older record."""

    first: Contact
    second: Contact
    reasons: dict[str, str]  # reason code -> the value the two share

    @property
    def score(self) -> int:
        return combined_score(WEIGHTS[code] for code in self.reasons)

    def sort_key(self) -> tuple:
        return (-self.score, str(self.first.id), str(self.second.id))

    def view(self) -> dict:
        return {"score": self.score, "contacts": [self.first, self.second],
                "reasons": [{"code": code, "weight": WEIGHTS[code], "value": value}
                            for code, value in sorted(self.reasons.items(), key=lambda item: -WEIGHTS[item[0]])]}


def _evidence(kind: str, key: str, a: Contact, b: Contact, phones: dict) -> tuple[str, str] | None:
    """The reason (code, shared value) a block of `kind` gives for the pair, or None when it does not hold."""
    if kind == "email":
        return email_variant(a.email_normalized, b.email_normalized), key
    if kind == "phone":
        same = phones[a.id] is not None and phones[a.id] == phones[b.id]
        return (SAME_PHONE, phones[a.id].removeprefix("national:")) if same else None
    if kind == "name_account":
        return SAME_NAME_AND_ACCOUNT, full_name(a)
    if kind == "name_company":
        return SAME_NAME_AND_COMPANY, key
    # email_local: the same local part at the same domain is a +tag variant, reported as such.
    if _domain(a.email_normalized) != _domain(b.email_normalized):
        return SAME_LOCAL_PART, key
    return None


def candidate_pairs(rows: Iterable, *, region: str | None, contact_id: uuid.UUID | None = None) -> list[Candidate]:
    """The scored pairs within each block of (kind, key, contact) rows, best first."""
    blocks: dict[tuple[str, str], list[Contact]] = {}
    for kind, key, contact in rows:
        blocks.setdefault((kind, key), []).append(contact)
    phones = {c.id: phone_key(c.phone, region) for (kind, _key), members in blocks.items() if kind == "phone"
              for c in members}
    pairs: dict[tuple, Candidate] = {}
    for (kind, key), members in blocks.items():
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                if contact_id is not None and contact_id not in (a.id, b.id):
                    continue
                found = _evidence(kind, key, a, b, phones)
                if found is None:
                    continue
                first, second = (a, b) if a.seq < b.seq else (b, a)
                pair = pairs.setdefault((first.id, second.id), Candidate(first, second, {}))
                pair.reasons[found[0]] = found[1]
    for pair in pairs.values():
        if SAME_GMAIL_ADDRESS in pair.reasons:
            pair.reasons.pop(SAME_LOCAL_PART, None)  # ann@gmail.com and ann@googlemail.com: one reason, not two
        name = full_name(pair.first)
        named = SAME_NAME_AND_ACCOUNT in pair.reasons or SAME_NAME_AND_COMPANY in pair.reasons
        if name is not None and name == full_name(pair.second) and not named:
            pair.reasons[SAME_NAME] = name
    return sorted(pairs.values(), key=Candidate.sort_key)


# -- the page's cursor: the last pair shown, by its sort key --------------------------------------------------

def encode_cursor(pair: Candidate) -> str:
    """The position after `pair` in the best-first order."""
    raw = f"{pair.score}:{pair.first.id}:{pair.second.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple | None:
    """The sort key a page starts after; a cursor this API did not issue is a 422 naming `cursor`."""
    if not cursor:
        return None
    try:
        score, first, second = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii").split(":")
        if not score.isdigit() or not 0 <= int(score) <= 100:
            raise ValueError
        return (-int(score), str(uuid.UUID(first)), str(uuid.UUID(second)))
    except (ValueError, binascii.Error, UnicodeError):
        raise Unprocessable("The cursor is not one this API returned.",
                            errors={"cursor": ["Invalid cursor."]}) from None


# -- use case ---------------------------------------------------------------------------------------------

def list_duplicates(uow: UnitOfWork, *, limit: int, cursor: str | None = None, contact_id: uuid.UUID | None = None,
                    region: str | None = None) -> dict:
    """Pairs of contacts that are probably one person, best first; `contact_id` narrows to one contact's pairs."""
    after = decode_cursor(cursor)
    with uow:
        session = uow.session
        if contact_id is None:
            rows = session.execute(_BLOCKS).all()
        else:
            rows = session.execute(_BLOCKS_OF_ONE, {"contact_id": contact_id}).all()
        # Only a contact without candidates costs a second look: is it there at all (or merged, erased)?
        if not rows and contact_id is not None and session.scalar(_EXISTS, {"contact_id": contact_id}) is None:
            raise missing_contact(session, contact_id)
    pairs = candidate_pairs(rows, region=region, contact_id=contact_id)
    if after is not None:
        pairs = [pair for pair in pairs if pair.sort_key() > after]
    page = pairs[:limit]
    next_cursor = encode_cursor(page[-1]) if len(pairs) > limit else None
    return {"items": [pair.view() for pair in page], "next_cursor": next_cursor}
