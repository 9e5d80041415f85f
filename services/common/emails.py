"""E-mail normalisation shared by every service that matches people by address.

The key an address is matched on is its NFKC form, lower-cased, with the domain in its IDNA (UTS #46,
non-transitional) ASCII form. So look-alike spellings of one address are one key — full-width letters,
compatibility characters such as ligatures, a decomposed accent, upper case, a Unicode domain and its
`xn--` form — while different addresses stay different: a Cyrillic `а` is another domain than a Latin `a`,
and IDNA 2008 keeps `ß` (`faß.de` is not `fass.de`). A domain IDNA refuses is an invalid address.
"""
from __future__ import annotations

import unicodedata

import idna
from marshmallow import ValidationError

# RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its angle brackets. The key is stored in a column
# of this width, and NFKC (one character may become 18) or IDNA (xn--) can make it longer than the input.
MAX_LENGTH = 254


class InvalidEmail(ValueError):
    """The address has no local part or domain, or its domain is not a valid IDNA host name."""


def _nfkc_lower(text: str) -> str:
    # Lower-casing can leave a string that is no longer NFKC (U+0130 gives "i" + a combining dot): normalise again.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).lower())


def _ascii_domain(domain: str) -> str:
    if domain.startswith("[") and domain.endswith("]"):
        return domain  # an address literal such as [192.0.2.1] is not a host name
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidEmail(f"The domain {domain!r} is not a valid international domain name ({exc}).") from None


def normalize_email(address: str) -> str:
    """The key `address` is matched on; raises InvalidEmail when it cannot be an address.

    `Ann@Example.COM `, `ａｎｎ@example.com` and `ann@ＥＸＡＭＰＬＥ.com` give `ann@example.com`;
    `ann@Bücher.example` and `ann@xn--bcher-kva.example` give `ann@xn--bcher-kva.example`.
    """
    local, at, domain = _nfkc_lower(address.strip()).strip().rpartition("@")
    if not at or not local or not domain:
        raise InvalidEmail("An e-mail address needs a local part, an @ and a domain.")
    key = f"{local}@{_ascii_domain(domain)}"
    if len(key) > MAX_LENGTH:
        raise InvalidEmail(f"The address is longer than {MAX_LENGTH} characters once normalised.")
    return key


def validate_email(address: str) -> None:
    """A marshmallow validator: the address must normalise (its domain must pass IDNA)."""
    try:
        normalize_email(address)
    except InvalidEmail as exc:
        raise ValidationError(str(exc)) from None


def email_domain(address: str) -> str:
    """The domain part of an address, normalised (ASCII)."""
    return normalize_email(address).rpartition("@")[2]


def rekey_stored_emails(connection, table: str, *, key=normalize_email, unique_where: str | None = None) -> list[str]:
    """Migration step: recompute `<table>.email_normalized` with `key` for the rows whose `email` is not ASCII.

    An ASCII address has the same key under every normalisation this module has had (trim, lower-case; NFKC
    and IDNA change nothing there), so only the others are read. A row whose new key another row already
    holds — within `unique_where`, the scope of the table's unique index — keeps its old key: such pairs are
    the look-alike duplicates the new key prevents, and merging two people is not a migration's decision.
    Returns a line for each row left as it was, for the operator to review.
    """
    from sqlalchemy import text  # migrations only; the request path needs no SQL here

    scope = unique_where or "1 = 1"
    query = f"SELECT id, email, email_normalized, CASE WHEN {scope} THEN 1 ELSE 0 END AS scoped FROM {table}"
    if connection.dialect.name == "postgresql":
        query += " WHERE email ~ '[^[:ascii:]]'"  # SQLite has no regex operator: the loop below filters
    holder = text(f"SELECT id FROM {table} WHERE email_normalized = :key AND id <> :id AND ({scope}) LIMIT 1")
    rekey = text(f"UPDATE {table} SET email_normalized = :key WHERE id = :id")
    left = []
    for row_id, email, old, scoped in connection.execute(text(query)).all():
        if email.isascii():
            continue
        try:
            new = key(email)
        except InvalidEmail as exc:
            left.append(f"{table} {row_id}: {email!r} keeps the key {old!r}: {exc}")
            continue
        if new == old:
            continue
        if scoped and connection.execute(holder, {"key": new, "id": row_id}).first() is not None:
            left.append(f"{table} {row_id}: {email!r} keeps the key {old!r}: another row already has {new!r}")
            continue
        connection.execute(rekey, {"key": new, "id": row_id})
    return left


def legacy_email_key(address: str) -> str:
    """The key before NFKC and IDNA (trimmed, lower-cased): what a downgrade restores."""
    return address.strip().lower()
