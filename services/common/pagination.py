"""Opaque cursor pagination: newest first by a sequence column, or keyset by a chosen `sort=` column."""
from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from marshmallow import Schema, fields, validate
from sqlalchemy import and_, literal, or_, tuple_
from sqlalchemy.sql import ColumnElement

from .problems import Unprocessable

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_SEQ = 2**63 - 1  # the largest BIGINT: every sequence column fits in one
MAX_CURSOR = 4096  # a sort value is a short column (a name, an e-mail); anything longer is not ours
_SEQ = re.compile(r"[0-9]{1,19}")
_INT = re.compile(r"-?[0-9]{1,19}")
_DECIMAL = re.compile(r"-?[0-9]{1,40}(\.[0-9]{1,40})?")
_SORT_KEY = "_sort_key"


class PageArgs(Schema):
    """`?limit=&cursor=` query arguments."""

    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = fields.String(load_default=None)


def sort_field(*names: str, default: str | None = "-created_at") -> fields.String:
    """The `sort` query field: `name` ascending or `-name` descending, for the given names only."""
    allowed = [value for name in names for value in (name, f"-{name}")]
    if default is not None and default not in allowed:
        raise ValueError(f"default sort {default!r} is not one of {allowed}")
    order = "newest first" if default is None else f"`{default}`"
    return fields.String(
        load_default=default, validate=validate.OneOf(allowed, error="Must be one of: {choices}."),
        metadata={"description": f"Order of the list: a field name for ascending, `-name` for descending; rows "
                                 f"without a value come last either way. Default: {order}."})


def _invalid_cursor(message: str = "Invalid cursor.") -> Unprocessable:
    return Unprocessable("The cursor is not one this API returned.", errors={"cursor": [message]})


def _b64encode(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _b64decode(cursor: str) -> str:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")


def encode_cursor(seq: int) -> str:
    """Encode the position after which the next page starts."""
    return _b64encode(f"s:{seq}")


def decode_cursor(cursor: str | None) -> int | None:
    """Decode a cursor; a tampered one is a 422 naming the `cursor` field.

    Only a position this API could have issued passes: a sequence number from 1 to the largest BIGINT, in
    plain digits. Anything else (a sign, spaces, an overflowing number the database would refuse with an
    error, and SQLite with an OverflowError) is refused here, so a forged cursor never reaches the query.
    """
    if not cursor:
        return None
    try:
        kind, value = _b64decode(cursor).split(":", 1)
        if kind != "s" or not _SEQ.fullmatch(value):
            raise ValueError
        seq = int(value)
        if not 1 <= seq <= MAX_SEQ:
            raise ValueError
        return seq
    except (ValueError, binascii.Error, UnicodeError):
        raise _invalid_cursor() from None


# -- sorted cursors -------------------------------------------------------------------------------------------
#
# A sorted cursor is base64 of `k:["<sort>", "<tag>", "<value text>" | null, <seq>]`. Each tag has one canonical
# text form; decoding parses it and re-encodes it, and refuses anything that does not come back identical, so
# only a value this API could have written (of the column's own type) is ever bound into the query.

# bool before int and datetime before date: each is a subclass of the other.
_TAGS = ((bool, "b"), (int, "i"), (Decimal, "d"), (datetime, "t"), (date, "D"), (uuid.UUID, "u"), (str, "s"))


def _tag(value) -> str:
    for kind, tag in _TAGS:
        if isinstance(value, kind):
            return tag
    raise TypeError(f"cannot sort a cursor by a {type(value).__name__} value")


def _text(tag: str, value) -> str:
    if tag == "b":
        return "true" if value else "false"
    if tag == "d":
        if not value.is_finite():
            raise TypeError("cannot sort a cursor by a non-finite decimal")
        return format(value, "f")
    if tag in ("t", "D"):
        return value.isoformat()
    return str(value)


def _parse(tag: str, text: str):
    if tag == "s":
        if "\x00" in text:  # PostgreSQL text cannot hold NUL: the query would fail rather than answer
            raise ValueError
        return text
    if tag == "b":
        return {"true": True, "false": False}[text]
    if tag == "i":
        if not _INT.fullmatch(text) or not -MAX_SEQ - 1 <= int(text) <= MAX_SEQ:
            raise ValueError
        return int(text)
    if tag == "d":
        if not _DECIMAL.fullmatch(text):
            raise ValueError
        return Decimal(text)
    if tag == "t":
        value = datetime.fromisoformat(text)
        if value.tzinfo is None:
            raise ValueError
        return value
    if tag == "D":
        return date.fromisoformat(text)
    if tag == "u":
        return uuid.UUID(text)
    raise ValueError


def _column_tag(column: ColumnElement) -> str:
    column_type = column.type
    # A TypeDecorator (UTCDateTime, Money) says `object`: its stored type is the one it decorates.
    column_type = getattr(column_type, "impl_instance", column_type)
    try:
        python_type = column_type.python_type
    except NotImplementedError:
        python_type = None
    for kind, tag in _TAGS:
        if isinstance(python_type, type) and issubclass(python_type, kind):
            return tag
    raise TypeError(f"cannot sort by {column}: its type has no cursor encoding")


def encode_sort_cursor(sort: str, value, seq: int) -> str:
    """Encode the position after a row whose sort column holds `value` (None for a null) and whose seq is `seq`."""
    if value is None:
        tag, text = "n", None
    else:
        tag = _tag(value)
        text = _text(tag, value)
    return _b64encode("k:" + json.dumps([sort, tag, text, seq], separators=(",", ":")))


def decode_sort_cursor(cursor: str | None, sort: str, tag: str) -> tuple[object, int] | None:
    """Decode a cursor made for `sort` over a column of type `tag`: (value, seq); anything else is a 422."""
    if not cursor:
        return None
    try:
        if len(cursor) > MAX_CURSOR:
            raise ValueError
        kind, body = _b64decode(cursor).split(":", 1)
        if kind == "s":
            raise _invalid_cursor(f"This cursor was made for another order than sort={sort}.")
        if kind != "k":
            raise ValueError
        position = json.loads(body, parse_constant=_refuse, parse_float=_refuse)
        if not isinstance(position, list) or len(position) != 4:
            raise ValueError
        made_for, value_tag, text, seq = position
        if made_for != sort:
            raise _invalid_cursor(f"This cursor was made for another order than sort={sort}.")
        if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
            raise ValueError
        if value_tag == "n" and text is None:
            return None, seq
        if value_tag != tag or not isinstance(text, str):
            raise ValueError
        value = _parse(tag, text)
        if _text(tag, value) != text:
            raise ValueError
        return value, seq
    except (ValueError, TypeError, KeyError, InvalidOperation, RecursionError, binascii.Error, UnicodeError):
        raise _invalid_cursor() from None


def _refuse(_text):
    raise ValueError


def _page_after(key: ColumnElement, seq_column, descending: bool, nullable: bool, position: tuple[object, int]):
    value, seq = position
    if value is None:  # nulls come last: after a null only later nulls remain
        return and_(key.is_(None), seq_column < seq if descending else seq_column > seq)
    # Typed binds: the value goes through the column's own type (a TypeDecorator's bind processing included).
    row, at = tuple_(key, seq_column), tuple_(literal(value, key.type), literal(seq, seq_column.type))
    after = row < at if descending else row > at
    return or_(after, key.is_(None)) if nullable else after


class Keyset:
    """Where one page of a `sort=` list starts and how it is ordered, for a query `paginate` cannot run itself."""

    def __init__(self, seq_column, *, sort: str, columns: Mapping[str, ColumnElement], cursor: str | None):
        descending, name = sort.startswith("-"), sort.removeprefix("-")
        if not columns or name not in columns:
            raise Unprocessable(f"This list cannot be sorted by {name}.",
                                errors={"sort": ["Must be one of: " + ", ".join(
                                    f"{field}, -{field}" for field in sorted(columns or ())) + "."]})
        self.sort, self.seq_column = sort, seq_column
        self.key = key = columns[name]
        # A NOT NULL column needs no null handling, and without it a (column, seq) index serves both directions.
        nullable = getattr(key, "nullable", True) is not False
        position = decode_sort_cursor(cursor, sort, _column_tag(key))
        #: The condition rows after the cursor meet, or None on the first page.
        self.after = None if position is None else _page_after(key, seq_column, descending, nullable, position)
        direction = key.desc() if descending else key.asc()
        #: The ORDER BY clauses: the sort column, then the sequence in the same direction.
        self.order_by = (direction.nulls_last() if nullable else direction,
                         seq_column.desc() if descending else seq_column)

    def next_cursor(self, last_row, value) -> str:
        """The cursor after `last_row` (an ORM object with the sequence column) whose sort value is `value`."""
        return encode_sort_cursor(self.sort, value, getattr(last_row, self.seq_column.key))


def paginate(session, stmt, seq_column, *, limit: int, cursor: str | None, sort: str | None = None,
             columns: Mapping[str, ColumnElement] | None = None) -> dict:
    """Run `stmt` for one page and return {"items", "next_cursor"}: newest first, or by `sort` (a key of `columns`).

    A sort orders by its column (nulls last, either direction), ties broken by `seq_column` in the same
    direction, so every row comes exactly once however many share a value. Always one query per page.
    """
    if sort is None:
        after = decode_cursor(cursor)
        if after is not None:
            stmt = stmt.where(seq_column < after)
        rows = list(session.scalars(stmt.order_by(seq_column.desc()).limit(limit + 1)))
        next_cursor = encode_cursor(getattr(rows[limit - 1], seq_column.key)) if len(rows) > limit else None
        return {"items": rows[:limit], "next_cursor": next_cursor}
    keyset = Keyset(seq_column, sort=sort, columns=columns, cursor=cursor)
    if keyset.after is not None:
        stmt = stmt.where(keyset.after)
    # The sort value rides along as an extra column: the cursor needs it even when the key is an expression.
    rows = session.execute(stmt.add_columns(keyset.key.label(_SORT_KEY)).order_by(*keyset.order_by)
                           .limit(limit + 1)).all()
    next_cursor = keyset.next_cursor(*rows[limit - 1]) if len(rows) > limit else None
    return {"items": [row[0] for row in rows[:limit]], "next_cursor": next_cursor}
