"""Opaque cursor pagination over a monotonically increasing sequence column."""
from __future__ import annotations

import base64
import binascii
import re

from marshmallow import Schema, fields, validate

from .problems import Unprocessable

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_SEQ = 2**63 - 1  # the largest BIGINT: every sequence column fits in one
_SEQ = re.compile(r"[0-9]{1,19}")


class PageArgs(Schema):
    """`?limit=&cursor=` query arguments."""

    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = fields.String(load_default=None)


def encode_cursor(seq: int) -> str:
    """Encode the position after which the next page starts."""
    return base64.urlsafe_b64encode(f"s:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """Decode a cursor; a tampered one is a 422 naming the `cursor` field.

    Only a position this API could have issued passes: a sequence number from 1 to the largest BIGINT, in
    plain digits. Anything else (a sign, spaces, an overflowing number the database would refuse with an
    error, and SQLite with an OverflowError) is refused here, so a forged cursor never reaches the query.
    """
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        kind, value = raw.split(":", 1)
        if kind != "s" or not _SEQ.fullmatch(value):
            raise ValueError
        seq = int(value)
        if not 1 <= seq <= MAX_SEQ:
            raise ValueError
        return seq
    except (ValueError, binascii.Error, UnicodeError):
        raise Unprocessable("The cursor is not one this API returned.", errors={"cursor": ["Invalid cursor."]}) from None


def paginate(session, stmt, seq_column, *, limit: int, cursor: str | None) -> dict:
    """Newest first: run `stmt` for one page and return {"items", "next_cursor"}."""
    after = decode_cursor(cursor)
    if after is not None:
        stmt = stmt.where(seq_column < after)
    rows = list(session.scalars(stmt.order_by(seq_column.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].seq) if len(rows) > limit else None
    return {"items": rows[:limit], "next_cursor": next_cursor}
