"""The segment rule language: parsing and checking a rule document (docs/segments.md).

A segment is stored as the document its author wrote, and evaluated in SQL (sql.py). Everything that can be
wrong with a document is found here, before any SQL is built, and reported as one 422 whose `errors` name each
place by its path (`rules.all.1.op`): the author fixes every mistake in one round. A document that parses is
turned into a small tree (All, Any, Not, Condition) whose values are already Python values of the field's type,
so the SQL side never looks at raw JSON again.

Custom attributes are typed by their definitions, which live in the database: the caller reads the ones a
document names (`attribute_names`) and passes them in, so this module stays free of I/O.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from services.common.catalog import CONSENT_CHANNELS, CONSENT_PURPOSES
from services.common.problems import Unprocessable

from ..analytics.params import ABC_CLASSES, PYRAMID_LEVELS, QUADRANTS, RFM_SEGMENTS, STAGES, UNITS_PER_UNIT
from ..attributes import canonical_number
from ..tags import normalize_tag

MAX_DEPTH = 5  # groups (all, any, not) nested at most this deep
MAX_CONDITIONS = 50
MAX_GROUPS = 50  # so a document of empty groups cannot grow the SQL without bound either
MAX_LIST = 100  # values of in, not_in, has_any, has_all, has_none
MAX_TEXT = 1000
MAX_OFFSET_DAYS = 36_500  # a relative time reaches at most a hundred years either way
MONEY_LIMIT = Decimal(10) ** 14  # NUMERIC(18, 4) holds fourteen digits before the point
INTEGER_LIMIT = 2**63
ROOT = "rules"

# The value types of fields, and the operators each allows.
STRING, NUMBER, INTEGER, MONEY, DATETIME, DATE, ENUM, ID, BOOLEAN, TAGS, CONSENT = (
    "string", "number", "integer", "money", "datetime", "date", "enum", "id", "boolean", "tags", "consent")
OPERATORS = {
    STRING: ("eq", "ne", "in", "not_in", "contains", "starts_with", "exists"),
    NUMBER: ("eq", "ne", "gt", "gte", "lt", "lte", "between", "exists"),
    INTEGER: ("eq", "ne", "gt", "gte", "lt", "lte", "between", "exists"),
    MONEY: ("eq", "ne", "gt", "gte", "lt", "lte", "between", "exists"),
    DATETIME: ("before", "after", "between", "exists"),
    DATE: ("before", "after", "between", "exists"),
    ENUM: ("eq", "ne", "in", "not_in", "exists"),
    ID: ("eq", "ne", "in", "not_in", "exists"),
    BOOLEAN: ("eq", "ne", "exists"),
    TAGS: ("has", "has_any", "has_all", "has_none"),
    CONSENT: ("eq", "ne", "exists"),
}
LIST_OPS = frozenset({"in", "not_in", "has_any", "has_all", "has_none"})
CONSENT_STATES = ("granted", "withdrawn")


@dataclass(frozen=True)
class FieldType:
    """What a field holds: its value type and, for an enum, the values it may take."""

    kind: str
    options: tuple[str, ...] = ()


_CONTACT_FIELDS = {name: FieldType(STRING) for name in (
    "email", "email_domain", "first_name", "last_name", "company", "job_title", "phone")}
_METRIC_FIELDS = {"purchase_count": FieldType(INTEGER), "first_purchase_at": FieldType(DATETIME),
                  "last_purchase_at": FieldType(DATETIME), "total_spent": FieldType(MONEY),
                  "net_spent": FieldType(MONEY), "margin": FieldType(MONEY)}
_MEASURE_FIELDS = {"abc_class": FieldType(ENUM, ABC_CLASSES), "recency_score": FieldType(INTEGER),
                   "frequency_score": FieldType(INTEGER), "monetary_score": FieldType(INTEGER),
                   "rfm_segment": FieldType(ENUM, RFM_SEGMENTS), "clv": FieldType(MONEY),
                   "predicted_margin": FieldType(MONEY), "current_profit": FieldType(MONEY),
                   "quadrant": FieldType(ENUM, QUADRANTS), "pyramid_level": FieldType(ENUM, PYRAMID_LEVELS),
                   "stage": FieldType(ENUM, STAGES)}
# Every field with a fixed name; `attributes.<name>` and `consent.<channel>.<purpose>` come on top.
FIELDS: dict[str, FieldType] = {**_CONTACT_FIELDS, "created_at": FieldType(DATETIME), "account_id": FieldType(ID),
                                "tags": FieldType(TAGS), **_METRIC_FIELDS, **_MEASURE_FIELDS}
METRIC_FIELDS = frozenset(_METRIC_FIELDS)
MEASURE_FIELDS = frozenset(_MEASURE_FIELDS)
ATTRIBUTE_PREFIX = "attributes."
CONSENT_PREFIX = "consent."
# A custom attribute's definition type -> the rule type of its values.
_ATTRIBUTE_KINDS = {"string": STRING, "number": NUMBER, "date": DATE, "boolean": BOOLEAN, "enum": ENUM}

_RELATIVE = re.compile(r"([+-])([0-9]{1,6})([hdw])")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MONEY = re.compile(r"-?[0-9]{1,20}(?:\.[0-9]{1,20})?")


# -- the parsed tree --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Moment:
    """A point in time in a rule: an absolute instant, or an offset from the instant the rule is evaluated at."""

    instant: datetime | None = None
    offset: timedelta | None = None
    text: str = ""  # as written (normalised), for the stored document

    def at(self, now: datetime) -> datetime:
        """The instant this stands for when the rule is evaluated at `now`."""
        return self.instant if self.instant is not None else now + self.offset


@dataclass(frozen=True)
class Day:
    """A day in a rule on a date attribute: a calendar date, or the (UTC) day of an offset from evaluation."""

    day: date | None = None
    offset: timedelta | None = None
    text: str = ""

    def at(self, now: datetime) -> date:
        """The date this stands for when the rule is evaluated at `now`."""
        return self.day if self.day is not None else (now + self.offset).astimezone(timezone.utc).date()


@dataclass(frozen=True)
class Condition:
    """One test of one field: `value` is already of the field's type (a tuple for lists and `between`)."""

    field: str
    type: FieldType
    op: str
    value: object


@dataclass(frozen=True)
class All:
    parts: tuple


@dataclass(frozen=True)
class Any:
    parts: tuple


@dataclass(frozen=True)
class Not:
    part: object


Rule = All | Any | Not | Condition


class _Problems:
    """The errors found so far, by path."""

    def __init__(self):
        self.errors: dict[str, list[str]] = {}
        self.conditions = 0
        self.groups = 0

    @property
    def too_many(self) -> bool:
        return self.conditions > MAX_CONDITIONS or self.groups > MAX_GROUPS

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)


# -- field types ---------------------------------------------------------------------------------------------------

def field_type(name: str, definitions: Mapping) -> FieldType:
    """The type of field `name`; ValueError when there is no such field (or no attribute by that name)."""
    if name in FIELDS:
        return FIELDS[name]
    if name.startswith(ATTRIBUTE_PREFIX):
        definition = definitions.get(name.removeprefix(ATTRIBUTE_PREFIX))
        if definition is None:
            raise ValueError(f"No custom attribute is defined with the name {name.removeprefix(ATTRIBUTE_PREFIX)[:50]!r}"
                             " (see /api/v1/contacts/attributes).")
        return FieldType(_ATTRIBUTE_KINDS[definition.type], tuple(definition.options or ()))
    if name.startswith(CONSENT_PREFIX):
        parts = name.split(".")
        if len(parts) != 3 or parts[1] not in CONSENT_CHANNELS or parts[2] not in CONSENT_PURPOSES:
            raise ValueError("Use consent.<channel>.<purpose>: channels " + ", ".join(CONSENT_CHANNELS)
                             + "; purposes " + ", ".join(CONSENT_PURPOSES) + ".")
        return FieldType(CONSENT, CONSENT_STATES)
    raise ValueError("Unknown field. Use a contact field, tags, attributes.<name>, consent.<channel>.<purpose>, "
                     "a purchase metric or a measure (docs/segments.md).")


def attribute_names(document) -> set[str]:
    """The custom attributes a (possibly invalid) document names, so their definitions can be read first."""
    names, stack = set(), [document]
    while stack and len(names) <= MAX_CONDITIONS:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node[:MAX_CONDITIONS])
        elif isinstance(node, dict):
            name = node.get("field")
            if isinstance(name, str) and name.startswith(ATTRIBUTE_PREFIX):
                names.add(name.removeprefix(ATTRIBUTE_PREFIX)[:100])
            stack.extend(value for key, value in node.items() if key in ("all", "any", "not"))
    return names


# -- values ----------------------------------------------------------------------------------------------------------

def _text(value) -> str:
    if not isinstance(value, str):
        raise ValueError("Not a string.")
    if not 1 <= len(value) <= MAX_TEXT or "\x00" in value:
        raise ValueError(f"Use 1-{MAX_TEXT} characters.")
    return value


def _integer(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -INTEGER_LIMIT <= value < INTEGER_LIMIT:
        raise ValueError("Not an integer.")
    return value


def _number(value) -> Decimal:
    return Decimal(canonical_number(value))


def _money(value) -> Decimal:
    if not isinstance(value, str) or not _MONEY.fullmatch(value.strip()):
        raise ValueError('Send an amount as a decimal string, e.g. "100.00".')
    amount = Decimal(value.strip())
    if abs(amount) >= MONEY_LIMIT or (amount * UNITS_PER_UNIT) % 1:
        raise ValueError("Use at most 14 digits before the point and 4 after it.")
    return amount


def _offset(value: str) -> timedelta | None:
    found = _RELATIVE.fullmatch(value)
    if found is None:
        return None
    sign, amount, unit = found.groups()
    offset = int(amount) * _UNITS[unit]
    if offset > timedelta(days=MAX_OFFSET_DAYS):
        raise ValueError(f"A relative time reaches at most {MAX_OFFSET_DAYS} days.")
    return -offset if sign == "-" else offset


def _moment(value) -> Moment:
    if not isinstance(value, str):
        raise ValueError('Not a time: use an ISO 8601 instant with an offset or a relative time such as "-90d".')
    text = value.strip()
    offset = _offset(text)
    if offset is not None:
        return Moment(offset=offset, text=text)
    try:
        instant = datetime.fromisoformat(text.replace("Z", "+00:00")) if "T" in text else None
        if instant is None or instant.tzinfo is None:
            raise ValueError
        instant = instant.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise ValueError('Not a time: use an ISO 8601 instant with an offset (2026-03-31T12:00:00Z) or a relative '
                         'time ("-90d", "-12h", "-2w", "+30d").') from None
    return Moment(instant=instant, text=instant.isoformat())


def _day(value) -> Day:
    if not isinstance(value, str):
        raise ValueError('Not a date: use YYYY-MM-DD or a relative time such as "-90d".')
    text = value.strip()
    offset = _offset(text)
    if offset is not None:
        return Day(offset=offset, text=text)
    try:
        if not _DATE.fullmatch(text):
            raise ValueError
        return Day(day=date.fromisoformat(text), text=text)
    except ValueError:
        raise ValueError('Not a date: use YYYY-MM-DD or a relative time ("-90d").') from None


def _boolean(value) -> bool:
    if not isinstance(value, bool):
        raise ValueError("Not a boolean: use true or false.")
    return value


def _uuid_text(value) -> str:
    try:
        return str(uuid.UUID(_text(value)))
    except ValueError:
        raise ValueError("Not a UUID.") from None


def _tag(value) -> str:
    return normalize_tag(_text(value))


def _scalar(kind: FieldType, field: str):
    """The function that turns one JSON value into a value of this field's type."""
    if kind.kind in (ENUM, CONSENT):
        def option(value):
            if not isinstance(value, str) or value not in kind.options:
                raise ValueError("Must be one of: " + ", ".join(kind.options) + ".")
            return value
        return option
    if kind.kind == STRING and field in ("email", "email_domain"):
        return lambda value: _text(value).strip().lower()  # compared as stored: lower-case
    return {STRING: _text, NUMBER: _number, INTEGER: _integer, MONEY: _money, DATETIME: _moment, DATE: _day,
            ID: _uuid_text, BOOLEAN: _boolean, TAGS: _tag}[kind.kind]


def _value(kind: FieldType, field: str, op: str, value):
    """The condition's value in Python, checked against the field's type and the operator; ValueError otherwise."""
    if op == "exists":
        return _boolean(value)
    scalar = _scalar(kind, field)
    if op in LIST_OPS:
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST:
            raise ValueError(f"Send a list of 1-{MAX_LIST} values.")
        return tuple(dict.fromkeys(scalar(item) for item in value))
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError("Send a list of two values: [low, high] (both included).")
        return tuple(scalar(item) for item in value)
    return scalar(value)


# -- documents -------------------------------------------------------------------------------------------------------

def _condition(node: dict, path: str, definitions: Mapping, problems: _Problems) -> Condition | None:
    problems.conditions += 1
    unknown = set(node) - {"field", "op", "value"}
    for key in sorted(map(str, unknown))[:5]:
        problems.add(f"{path}.{key[:50]}", "Unknown key: a condition has field, op and value.")
    name, op = node.get("field"), node.get("op")
    if not isinstance(name, str):
        problems.add(f"{path}.field", "Required: the name of a field.")
        return None
    try:
        kind = field_type(name, definitions)
    except ValueError as exc:
        problems.add(f"{path}.field", str(exc))
        return None
    allowed = OPERATORS[kind.kind]
    if op not in allowed:
        problems.add(f"{path}.op", f"{name[:60]} is of type {kind.kind}: use one of " + ", ".join(allowed) + ".")
        return None
    if "value" not in node and op != "exists":
        problems.add(f"{path}.value", "Required.")
        return None
    try:
        value = _value(kind, name, op, node.get("value", True))
    except ValueError as exc:
        problems.add(f"{path}.value", str(exc))
        return None
    return Condition(name, kind, op, value)


def _rule(node, path: str, depth: int, definitions: Mapping, problems: _Problems, *, condition_ok: bool):
    if not isinstance(node, dict):
        problems.add(path, "Not an object: use {\"all\": [...]}, {\"any\": [...]}, {\"not\": ...} or a condition.")
        return None
    groups = [key for key in ("all", "any", "not") if key in node]
    if not groups:
        if condition_ok and node.keys() & {"field", "op", "value"}:
            return _condition(node, path, definitions, problems)
        problems.add(path, "Use {\"all\": [...]}, {\"any\": [...]} or {\"not\": ...}"
                     + (" or a condition {\"field\", \"op\", \"value\"}." if condition_ok else "."))
        return None
    if len(node) != 1:
        problems.add(path, "A group has exactly one key: all, any or not.")
        return None
    key = groups[0]
    problems.groups += 1
    if depth > MAX_DEPTH:
        problems.add(f"{path}.{key}", f"Groups nest at most {MAX_DEPTH} deep.")
        return None
    if key == "not":
        part = _rule(node["not"], f"{path}.not", depth + 1, definitions, problems, condition_ok=True)
        return None if part is None else Not(part)
    items = node[key]
    if not isinstance(items, list):
        problems.add(f"{path}.{key}", "Not a list of rules and conditions.")
        return None
    parts = []
    for index, item in enumerate(items):
        if problems.too_many:
            break
        parts.append(_rule(item, f"{path}.{key}.{index}", depth + 1, definitions, problems, condition_ok=True))
    return (All if key == "all" else Any)(tuple(parts))


def parse_rules(document, definitions: Mapping | None = None) -> Rule:
    """The rule tree of `document`; a 422 naming every mistake by path (`rules.all.1.op`).

    `definitions` maps custom attribute names to their definitions (anything with `type` and `options`).
    """
    problems = _Problems()
    rule = _rule(document, ROOT, 1, definitions or {}, problems, condition_ok=False)
    if problems.too_many:
        problems.add(ROOT, f"A segment has at most {MAX_CONDITIONS} conditions and {MAX_GROUPS} groups.")
    if problems.errors:
        raise Unprocessable("The segment's rules are not valid; `errors` names each mistake by its path.",
                            errors=problems.errors)
    return rule


def conditions(rule: Rule):
    """Every condition of a rule tree, depth first."""
    if isinstance(rule, Condition):
        yield rule
    elif isinstance(rule, Not):
        yield from conditions(rule.part)
    else:
        for part in rule.parts:
            yield from conditions(part)


def _json_value(value):
    if isinstance(value, tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (Moment, Day)):
        return value.text
    return value


def to_document(rule: Rule) -> dict:
    """The canonical document of a rule tree: what a segment stores (values in their normal form)."""
    if isinstance(rule, Condition):
        return {"field": rule.field, "op": rule.op, "value": _json_value(rule.value)}
    if isinstance(rule, Not):
        return {"not": to_document(rule.part)}
    return {"all" if isinstance(rule, All) else "any": [to_document(part) for part in rule.parts]}

