"""SQL the contacts service writes differently for PostgreSQL and SQLite: JSON containment, an address's domain.

Each is one expression object compiled per dialect, so a statement built without a session (the list's
filters, an index) runs on either database. PostgreSQL gets the form its indexes serve: `@>` for the GIN
indexes on `tags` and `attributes`, and `split_part(...)` for the index of unassigned contacts by domain.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import (BigInteger, Float, Integer, String, and_, cast, exists, func, literal, literal_column, select,
                        true, type_coerce)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import Boolean


class email_domain(FunctionElement):
    """The part of a normalised e-mail address after its last `@` (the address's domain)."""

    type = String()
    name = "email_domain"
    inherit_cache = True


@compiles(email_domain, "postgresql")
def _email_domain_postgresql(element, compiler, **kw):
    # Constants, not binds: a prepared (generic) plan must still match the index expression.
    return f"split_part({compiler.process(element.clauses, **kw)}, '@', -1)"


@compiles(email_domain)
def _email_domain_other(element, compiler, **kw):
    # SQLite has no split: strip everything up to the last '@' (rtrim removes the trailing non-'@' characters).
    address = compiler.process(element.clauses, **kw)
    return f"replace({address}, rtrim({address}, replace({address}, '@', '')), '')"


class json_contains(ColumnElement):
    """True when the JSON `column` contains `document`: every item of a list, every key and value of a dict.

    Values are strings, integers or booleans (what tags and attribute values are stored as). Both forms are
    built here from ordinary expressions with bound values, so the statement's compiled form is cached and a
    filter's values never become SQL text; each dialect compiles the one it runs.
    """

    type = Boolean()
    inherit_cache = True
    _traverse_internals = [("postgresql", InternalTraversal.dp_clauseelement),
                           ("other", InternalTraversal.dp_clauseelement)]

    def __init__(self, column, document: Sequence | Mapping):
        self.postgresql = column.op("@>")(literal(document, JSONB))
        items = document.items() if isinstance(document, Mapping) else ((None, value) for value in document)
        self.other = and_(true(), *(_holds(column, key, value) for key, value in items))

    @property
    def _from_objects(self):
        # The tables the column comes from, so a SELECT with only this in its WHERE still has its FROM.
        return self.postgresql._from_objects


def _json_type(value) -> str:
    # json_each's `type` column: how SQLite tells a JSON true from the number 1 and a string from a number.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "text"
    return "integer"


def _holds(column, key: str | None, value):
    """SQLite: EXISTS an element of `column` (under `key` when given) equal to `value`."""
    each = func.json_each(column).table_valued("key", "atom", "type")
    match = [each.c.type == _json_type(value)]
    if key is not None:
        match.append(each.c.key == key)
    if not isinstance(value, bool):
        match.append(each.c.atom == value)
    return exists(select(literal_column("1")).select_from(each).where(*match))


@compiles(json_contains, "postgresql")
def _json_contains_postgresql(element, compiler, **kw):
    return compiler.process(element.postgresql, **kw)


@compiles(json_contains)
def _json_contains_other(element, compiler, **kw):
    return compiler.process(element.other, **kw)


class json_has_key(ColumnElement):
    """True when the JSON object in `column` has the key `key` (a custom attribute's name)."""

    type = Boolean()
    inherit_cache = True
    _traverse_internals = [("postgresql", InternalTraversal.dp_clauseelement),
                           ("other", InternalTraversal.dp_clauseelement)]

    def __init__(self, column, key: str):
        self.postgresql = type_coerce(column, JSONB).has_key(key)
        each = func.json_each(column).table_valued("key")
        self.other = exists(select(literal_column("1")).select_from(each).where(each.c.key == key))

    @property
    def _from_objects(self):
        # The tables the column comes from, so a SELECT with only this in its WHERE still has its FROM.
        return self.postgresql._from_objects


@compiles(json_has_key, "postgresql")
def _json_has_key_postgresql(element, compiler, **kw):
    return compiler.process(element.postgresql, **kw)


@compiles(json_has_key)
def _json_has_key_other(element, compiler, **kw):
    return compiler.process(element.other, **kw)


# -- analytics (analytics/measures.py) ---------------------------------------------------------------------------
#
# Money columns are NUMERIC on PostgreSQL and decimal strings on SQLite; the analytics add them up as BIGINT
# units of 1/10,000, exact on both. PostgreSQL sums the NUMERIC amounts and converts the sum once (exact, and
# one cast per group rather than per row); SQLite converts each amount (4 places survive a double) and adds
# integers.

class money_units_sum(ColumnElement):
    """SUM(amount) as integer units of 1/10,000 over the rows `where` holds (NULL when none has an amount)."""

    type = BigInteger()
    inherit_cache = True
    _traverse_internals = [("postgresql", InternalTraversal.dp_clauseelement),
                           ("other", InternalTraversal.dp_clauseelement)]

    def __init__(self, amount, where=None):
        total = func.sum(amount)
        self.postgresql = cast((total if where is None else total.filter(where)) * 10000, BigInteger)
        units = func.sum(cast(func.round(cast(amount, Float) * 10000), BigInteger))
        self.other = units if where is None else units.filter(where)

    @property
    def _from_objects(self):
        return self.postgresql._from_objects


@compiles(money_units_sum, "postgresql")
def _money_units_sum_postgresql(element, compiler, **kw):
    return compiler.process(element.postgresql, **kw)


@compiles(money_units_sum)
def _money_units_sum_other(element, compiler, **kw):
    return compiler.process(element.other, **kw)


class days_between(FunctionElement):
    """`later` - `earlier` in whole days, two DATE values."""

    type = Integer()
    name = "days_between"
    inherit_cache = True


@compiles(days_between, "postgresql")
def _days_between_postgresql(element, compiler, **kw):
    later, earlier = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"({later} - {earlier})"


@compiles(days_between)
def _days_between_other(element, compiler, **kw):
    later, earlier = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"


class seconds_between(FunctionElement):
    """`later` - `earlier` in seconds (fractional), two timestamps."""

    type = Float()
    name = "seconds_between"
    inherit_cache = True


@compiles(seconds_between, "postgresql")
def _seconds_between_postgresql(element, compiler, **kw):
    later, earlier = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"extract(epoch from ({later} - {earlier}))"


@compiles(seconds_between)
def _seconds_between_other(element, compiler, **kw):
    later, earlier = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"((julianday({later}) - julianday({earlier})) * 86400.0)"


class round_half_even(FunctionElement):
    """A number rounded half to even to a whole number (BIGINT): both databases' round() takes halves away from 0."""

    type = BigInteger()
    name = "round_half_even"
    inherit_cache = True


@compiles(round_half_even, "postgresql")
def _round_half_even_postgresql(element, compiler, **kw):
    x = compiler.process(element.clauses, **kw)
    return f"CAST(CASE WHEN abs({x} - trunc({x})) = 0.5 THEN 2 * round({x} / 2) ELSE round({x}) END AS BIGINT)"


@compiles(round_half_even)
def _round_half_even_other(element, compiler, **kw):
    # CAST(x AS INTEGER) truncates towards zero (SQLite's trunc() needs the optional math functions).
    x = compiler.process(element.clauses, **kw)
    return (f"CAST(CASE WHEN abs({x} - CAST({x} AS INTEGER)) = 0.5 THEN 2 * round({x} / 2.0) ELSE round({x}) END"
            " AS INTEGER)")
