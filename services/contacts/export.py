"""The CSV export of contacts: the list's filters, streamed in batches from a server-side cursor.

Rows are read BATCH at a time and written out as they come, so an export of any size holds one batch in memory.
Cells a spreadsheet would run as a formula are neutralised (OWASP, "CSV injection"): a leading `=`, `+`, `-`,
`@`, tab or carriage return gets a `'` in front.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping

from services.common.uow import UnitOfWork

from .analytics.contact_measures import CONTACT_MEASURES, MONEY, with_contact_measures
from .analytics.snapshots import money
from .filters import checked_filters, contacts_statement
from .models import Contact

CONTACT_COLUMNS = ("id", "email", "first_name", "last_name", "company", "job_title", "phone", "account_id", "tags",
                   "attributes", "origin_lead_id", "status", "terminated_at", "created_at", "updated_at", "version")
# The contact's measures in the base currency's current analytics snapshot (empty without one), as on its record.
MEASURE_COLUMNS = tuple(CONTACT_MEASURES)
COLUMNS = CONTACT_COLUMNS + MEASURE_COLUMNS
_MONEY_COLUMNS = frozenset(name for name, (_column, kind) in CONTACT_MEASURES.items() if kind == MONEY)
BATCH = 1000
TAG_SEPARATOR = ";"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_TABLE = Contact.__table__


def neutralise(text: str) -> str:
    """`text`, with a `'` in front when a spreadsheet would read it as a formula."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _cells(row) -> list[str]:
    cells = []
    for name, value in zip(COLUMNS, row):
        if value is None:
            cells.append("")
        elif name == "tags":
            cells.append(neutralise(TAG_SEPARATOR.join(value)))
        elif name == "attributes":
            cells.append(json.dumps(value, ensure_ascii=False, sort_keys=True) if value else "")
        elif name in ("created_at", "updated_at", "terminated_at"):
            cells.append(value.isoformat())
        elif name in _MONEY_COLUMNS:
            cells.append(format(money(value), "f"))  # a number we wrote, never a formula: no `'` before a minus
        else:
            cells.append(neutralise(str(value)))
    return cells


def export_csv(uow: UnitOfWork, filters: Mapping) -> Iterator[str]:
    """The contacts matching the list's `filters` as CSV text (a header row first), oldest first, in pieces.

    The filters are checked now (a bad `attr.<name>` is a 422 before anything is sent); the rows are read as the
    pieces are asked for, in a unit of work that stays open until the last one (or until the caller closes).
    """
    with uow:
        checked = checked_filters(uow.session, filters)
    stmt = (contacts_statement(**checked)
            .with_only_columns(*(_TABLE.c[name] for name in CONTACT_COLUMNS),
                               *(column for column, _kind in CONTACT_MEASURES.values()))
            .select_from(with_contact_measures(_TABLE, _TABLE.c.id, checked.get("analytics_currency")))
            .order_by(Contact.seq).execution_options(yield_per=BATCH))
    return _pieces(uow, stmt)


def _pieces(uow: UnitOfWork, stmt) -> Iterator[str]:
    lines: list[str] = []
    writer = csv.writer(_Appender(lines), lineterminator="\r\n")  # RFC 4180
    writer.writerow(COLUMNS)
    yield lines.pop()
    with uow:
        session = uow.session
        if session.get_bind().dialect.name == "postgresql":
            # A server-side cursor needs a transaction; the read-only units of work run in autocommit.
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        for batch in session.execute(stmt).partitions():
            writer.writerows(_cells(row) for row in batch)
            del batch  # held no longer than its lines: one batch in memory at a time
            yield _drain(lines)


def _drain(lines: list[str]) -> str:
    piece = "".join(lines)
    lines.clear()
    return piece


class _Appender:
    """The file csv.writer writes to: keeps each written line (a StringIO would hold 4 bytes per character)."""

    def __init__(self, lines: list[str]):
        self.write = lines.append
