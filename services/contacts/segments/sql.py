"""A parsed segment rule as SQL: one WHERE over contacts and what is known about them, on PostgreSQL and SQLite.

The statement reads `contacts` LEFT JOIN the purchase summary and the contact's purchase totals in the segment's
currency LEFT JOIN the contact's row in one analytics snapshot (the current one for reads, the one being
computed for a membership refresh). Only the tables the rule names are joined.

Every condition compiles to a test that is never NULL (a contact without a value is simply in or out, as
docs/segments.md says for each operator), so `not` is the exact complement of what it wraps. Values are bound
parameters typed by their columns, never SQL text. Money is compared in integer units of 1/10,000 on both sides:
exact on PostgreSQL and on SQLite, which stores amounts as decimal text.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Integer, Numeric, Select, and_, false, func, literal, not_, or_, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from ..analytics.snapshots import current_refresh_id, to_units
from ..dialects import email_domain, json_contains
from ..models import Contact, ContactPurchaseMetric, ContactPurchaseSummary, CustomerAnalytics
from .grammar import (
    ATTRIBUTE_PREFIX,
    BOOLEAN,
    CONSENT_PREFIX,
    DATE,
    DATETIME,
    ID,
    MEASURE_FIELDS,
    METRIC_FIELDS,
    MONEY,
    NUMBER,
    TAGS,
    All,
    Any,
    Condition,
    Not,
    Rule,
    conditions,
)

CONTACTS = Contact.__table__
SUMMARY = ContactPurchaseSummary.__table__
METRICS = ContactPurchaseMetric.__table__
ANALYTICS = CustomerAnalytics.__table__
_NUMBER_TYPE = Numeric(38, 10)


class units(FunctionElement):
    """A Money column in integer units of 1/10,000 (exact: amounts carry at most four places)."""

    type = Integer()
    name = "money_units"
    inherit_cache = True


@compiles(units, "postgresql")
def _units_postgresql(element, compiler, **kw):
    return f"CAST(({compiler.process(element.clauses, **kw)}) * 10000 AS BIGINT)"


@compiles(units)
def _units_other(element, compiler, **kw):
    # SQLite keeps the amount as decimal text; a double holds 4-place amounts of 14 digits exactly enough to round.
    return f"CAST(ROUND(CAST(({compiler.process(element.clauses, **kw)}) AS REAL) * 10000) AS INTEGER)"


_ZERO = literal(0, Integer())
# The columns a plain field name reads; purchase metrics count a contact without purchases as 0.
_COLUMNS = {
    "email": CONTACTS.c.email_normalized, "email_domain": email_domain(CONTACTS.c.email_normalized),
    **{name: CONTACTS.c[name] for name in ("first_name", "last_name", "company", "job_title", "phone",
                                           "created_at", "account_id", "tags")},
    "purchase_count": func.coalesce(METRICS.c["count"], _ZERO),
    "first_purchase_at": SUMMARY.c.first_purchase_at, "last_purchase_at": SUMMARY.c.last_purchase_at,
    "total_spent": func.coalesce(units(METRICS.c.total), _ZERO),
    "net_spent": func.coalesce(units(METRICS.c.total) - units(METRICS.c.returned), _ZERO),
    "margin": func.coalesce(units(METRICS.c.margin), _ZERO),
    **{name: ANALYTICS.c[name] for name in ("abc_class", "recency_score", "frequency_score", "monetary_score",
                                            "rfm_segment", "quadrant", "pyramid_level", "stage")},
    "clv": ANALYTICS.c.clv_units, "predicted_margin": ANALYTICS.c.predicted_margin_units,
    "current_profit": ANALYTICS.c.current_profit_units,
}


def _column(condition: Condition) -> ColumnElement:
    name = condition.field
    if name.startswith(ATTRIBUTE_PREFIX):
        value = CONTACTS.c.attributes[name.removeprefix(ATTRIBUTE_PREFIX)]
        if condition.type.kind == NUMBER:
            return value.as_numeric(38, 10)
        return value.as_boolean() if condition.type.kind == BOOLEAN else value.as_string()
    if name.startswith(CONSENT_PREFIX):
        _prefix, channel, purpose = name.split(".")
        return CONTACTS.c.consents[(f"{channel}:{purpose}", "status")].as_string()
    return _COLUMNS[name]


def _bound(condition: Condition, value, now: datetime):
    """A rule value as the column compares it."""
    kind = condition.type.kind
    if kind == MONEY:
        return to_units(value)
    if kind == DATETIME:
        return value.at(now)
    if kind == DATE:
        return value.at(now).isoformat()  # date attributes are stored as YYYY-MM-DD text
    if kind == ID:
        return uuid.UUID(value)
    if kind == NUMBER:
        return literal(value, _NUMBER_TYPE)
    return value


def _tags(op: str, tags: tuple) -> ColumnElement:
    column = CONTACTS.c.tags
    if op in ("has", "has_all"):
        return json_contains(column, sorted(tags) if op == "has_all" else [tags])
    anyone = or_(false(), *(json_contains(column, [tag]) for tag in tags))
    return anyone if op == "has_any" else not_(anyone)


def condition_sql(condition: Condition, now: datetime) -> ColumnElement:
    """One condition as a boolean that is never NULL."""
    op = condition.op
    if condition.type.kind == TAGS:
        return _tags(op, condition.value)
    column = _column(condition)
    present = column.is_not(None)
    if op == "exists":
        return present if condition.value else column.is_(None)
    if isinstance(condition.value, tuple):
        values = [_bound(condition, item, now) for item in condition.value]
    else:
        value = _bound(condition, condition.value, now)
    if op == "ne":
        return or_(column.is_(None), column != value)
    if op == "not_in":
        return or_(column.is_(None), column.not_in(values))
    test = {
        "eq": lambda: column == value, "in": lambda: column.in_(values),
        "gt": lambda: column > value, "gte": lambda: column >= value,
        "lt": lambda: column < value, "lte": lambda: column <= value,
        "before": lambda: column < value, "after": lambda: column > value,
        "between": lambda: column.between(*values),
        "contains": lambda: column.icontains(value, autoescape=True),
        "starts_with": lambda: column.istartswith(value, autoescape=True),
    }[op]()
    return and_(present, test)


def rule_sql(rule: Rule, now: datetime) -> ColumnElement:
    """The WHERE of a rule tree evaluated at `now` (relative times count from it)."""
    if isinstance(rule, Condition):
        return condition_sql(rule, now)
    if isinstance(rule, Not):
        return not_(rule_sql(rule.part, now))
    if isinstance(rule, All):
        return and_(true(), *(rule_sql(part, now) for part in rule.parts))
    assert isinstance(rule, Any)
    return or_(false(), *(rule_sql(part, now) for part in rule.parts))


def needs(rule: Rule) -> tuple[bool, bool]:
    """Whether the rule reads purchase metrics, and whether it reads measures (so only those are joined)."""
    names = {condition.field for condition in conditions(rule)}
    return bool(names & METRIC_FIELDS), bool(names & MEASURE_FIELDS)


def source(currency: str, *, metrics: bool, measures: bool, refresh_id=None):
    """contacts LEFT JOIN what the rule reads; `refresh_id` picks the snapshot (default: the current one)."""
    joined = CONTACTS
    if metrics:
        joined = (joined.outerjoin(SUMMARY, SUMMARY.c.contact_id == CONTACTS.c.id)
                  .outerjoin(METRICS, and_(METRICS.c.contact_id == CONTACTS.c.id, METRICS.c.currency == currency)))
    if measures:
        snapshot = current_refresh_id(currency) if refresh_id is None else literal(refresh_id, ANALYTICS.c.refresh_id.type)
        joined = joined.outerjoin(ANALYTICS, and_(ANALYTICS.c.contact_id == CONTACTS.c.id,
                                                  ANALYTICS.c.refresh_id == snapshot))
    return joined


def matching_ids(rule: Rule, currency: str, now: datetime, *, refresh_id=None) -> Select:
    """SELECT the ids of the contacts the rule matches."""
    metrics, measures = needs(rule)
    return (select(CONTACTS.c.id)
            .select_from(source(currency, metrics=metrics, measures=measures, refresh_id=refresh_id))
            .where(rule_sql(rule, now)))


def count_statement(rule: Rule, currency: str, now: datetime) -> Select:
    """SELECT how many contacts the rule matches now."""
    metrics, measures = needs(rule)
    return (select(func.count()).select_from(source(currency, metrics=metrics, measures=measures))
            .where(rule_sql(rule, now)))


# What a member row shows: the contact's id, e-mail and name, and its measures in the segment's currency.
MEMBER_COLUMNS = (CONTACTS.c.seq, CONTACTS.c.id, CONTACTS.c.email, CONTACTS.c.first_name, CONTACTS.c.last_name,
                  ANALYTICS.c.abc_class, ANALYTICS.c.recency_score, ANALYTICS.c.frequency_score,
                  ANALYTICS.c.monetary_score, ANALYTICS.c.rfm_segment, ANALYTICS.c.clv_units,
                  ANALYTICS.c.predicted_margin_units, ANALYTICS.c.current_profit_units, ANALYTICS.c.quadrant,
                  ANALYTICS.c.pyramid_level, ANALYTICS.c.stage)


def members_statement(rule: Rule, currency: str, now: datetime, *, after_seq: int | None, limit: int) -> Select:
    """SELECT one page of the members (MEMBER_COLUMNS) in contact order, after `after_seq`."""
    metrics, _measures = needs(rule)
    stmt = (select(*MEMBER_COLUMNS).select_from(source(currency, metrics=metrics, measures=True))
            .where(rule_sql(rule, now)))
    if after_seq is not None:
        stmt = stmt.where(CONTACTS.c.seq > after_seq)
    return stmt.order_by(CONTACTS.c.seq).limit(limit)
