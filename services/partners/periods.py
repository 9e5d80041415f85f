"""A contract period's dates without I/O: its notice deadline and state, and the same deadline in SQL.

The terms in force run from `effective_from` to `effective_to`; the notice period is the last
`notice_period_days` before the end, so the notice deadline (the last day to give notice without entering it)
is `effective_to - notice_period_days`. The renewal job, the contract reads and `?expiring_within=` must agree
on these dates, so they live here once; `notice_deadline_sql` is the deadline for a query, since SQLite and
PostgreSQL subtract days from a date differently.
"""
from __future__ import annotations

import re
from datetime import date, timedelta

from sqlalchemy import Date
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

STATES = ("active", "in_notice", "expired")
MAX_WINDOW_DAYS = 3650
_WINDOW = re.compile(r"([0-9]{1,4})d")


def notice_deadline(terms) -> date | None:
    """The day the notice period starts (`effective_to - notice_period_days`); None for an open-ended contract."""
    if terms.effective_to is None:
        return None
    return terms.effective_to - timedelta(days=terms.notice_period_days or 0)


def period_state(terms, today: date) -> str:
    """`expired` from the end date on, `in_notice` from the notice deadline on, else `active`."""
    if terms.effective_to is None:
        return "active"
    if today >= terms.effective_to:
        return "expired"
    if today >= notice_deadline(terms):
        return "in_notice"
    return "active"


def describe(terms, today: date) -> dict:
    """The period fields every contract read shows next to its terms."""
    return {"notice_deadline": notice_deadline(terms), "state": period_state(terms, today)}


def next_period(terms) -> tuple[date, date]:
    """The period an auto-renewal makes: from the old end, as long as the old period."""
    return terms.effective_to, terms.effective_to + (terms.effective_to - terms.effective_from)


def parse_window(text: str) -> int:
    """Whole days from `Nd` (1..3650); ValueError otherwise."""
    found = _WINDOW.fullmatch(text or "")
    if not found or not 1 <= int(found.group(1)) <= MAX_WINDOW_DAYS:
        raise ValueError(text)
    return int(found.group(1))


class notice_deadline_sql(FunctionElement):  # lower case: used like a SQL function
    """`effective_to - notice_period_days` as a DATE, on PostgreSQL and SQLite."""

    type = Date()
    name = "notice_deadline"
    inherit_cache = True


@compiles(notice_deadline_sql)
def _deadline_postgresql(element, compiler, **kw):
    end, days = list(element.clauses)
    return f"({compiler.process(end, **kw)} - {compiler.process(days, **kw)})"  # date - integer is a date


@compiles(notice_deadline_sql, "sqlite")
def _deadline_sqlite(element, compiler, **kw):
    end, days = list(element.clauses)
    return f"date({compiler.process(end, **kw)}, '-' || {compiler.process(days, **kw)} || ' days')"
