"""Custom attributes: definitions made through the API, and the typed values contacts carry in `attributes`.

Each value is stored in one canonical form per type, so a filter is an exact containment test
(`attributes @> '{"tier": "gold"}'`, served by the GIN index on PostgreSQL):

- `string`: the text, trimmed, 1 to the definition's `max_length` characters;
- `number`: a decimal string, no exponent, no trailing zeros (`"19.9"`, `"-3"`, `"0"`). Never a float: sent as
  a decimal string or a JSON integer; a JSON fraction is refused, it has been through a binary float already;
- `date`: `"YYYY-MM-DD"`;
- `boolean`: JSON `true` or `false`;
- `enum`: one of the definition's options, exactly.

Definitions are read only by a request that touches attributes (a value or an `attr.` filter): the names it
uses, in one query.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import Decimal

from marshmallow import ValidationError
from sqlalchemy import delete, exists, func, select
from sqlalchemy.orm import Session

from services.common.pagination import paginate
from services.common.problems import Conflict, NotFound, Unprocessable
from services.common.uow import UnitOfWork, insert_or_reread

from .dialects import json_has_key
from .models import ATTRIBUTE_NAME_MAX, AttributeDefinition, Contact

NAME = re.compile(rf"[a-z][a-z0-9_]{{0,{ATTRIBUTE_NAME_MAX - 1}}}")
NAME_RULE = f"1-{ATTRIBUTE_NAME_MAX} characters: a lower-case letter, then lower-case letters, digits or '_'."
STRING_MAX = 1000  # the longest max_length a definition may set
STRING_DEFAULT_MAX = 255
OPTION_MAX = 100
OPTIONS_MAX = 100
DEFINITIONS_MAX = 200
NUMBER_INTEGER_DIGITS = 18
NUMBER_PLACES = 10
FILTERS_MAX = 10
_NUMBER = re.compile(r"-?[0-9]{1,40}(?:\.[0-9]{1,40})?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SHOWN_NAME_MAX = 50  # a longer unknown name is not echoed back as a field name


# -- pure rules -------------------------------------------------------------------------------------------

def canonical_number(value) -> str:
    """A number attribute's stored form, from a decimal string or an int; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError('Send a number as a decimal string, e.g. "19.99", or as a JSON integer: a JSON fraction '
                         "has already been rounded to a binary float.")
    text = value.strip() if isinstance(value, str) else str(value) if abs(value) < 10**40 else ""
    if not _NUMBER.fullmatch(text):
        raise ValueError('Not a decimal number such as "19.99" or "-3".')
    number = Decimal(text)
    if number == 0:
        return "0"
    number = number.normalize()
    if abs(number) >= 10**NUMBER_INTEGER_DIGITS or number.as_tuple().exponent < -NUMBER_PLACES:
        raise ValueError(f"Use at most {NUMBER_INTEGER_DIGITS} digits before the point and {NUMBER_PLACES} after it.")
    return format(number, "f")


def typed_value(definition, value):
    """`value` in the stored form of `definition`'s type; ValueError saying what is wrong."""
    kind = definition.type
    if kind == "number":
        return canonical_number(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError("Not a boolean: send true or false.")
        return value
    if not isinstance(value, str):
        raise ValueError(f"Not a {kind}: send a string.")
    text = value.strip()
    if kind == "date":
        try:
            if not _DATE.fullmatch(text):
                raise ValueError
            return date.fromisoformat(text).isoformat()
        except ValueError:
            raise ValueError("Not a date: use YYYY-MM-DD.") from None
    if kind == "enum":
        if text not in definition.options:
            raise ValueError("Must be one of: " + ", ".join(definition.options) + ".")
        return text
    limit = definition.max_length or STRING_DEFAULT_MAX
    if not 1 <= len(text) <= limit:
        raise ValueError(f"Use 1-{limit} characters (send null to remove the value).")
    return text


def filter_value(definition, text: str):
    """The stored form a `?attr.<name>=` query value stands for; ValueError when it cannot be one."""
    if definition.type == "boolean":
        if text not in ("true", "false"):
            raise ValueError("Not a boolean: use true or false.")
        return text == "true"
    return typed_value(definition, text)


def merged(current: Mapping, changes: Mapping) -> dict:
    """`current` with `changes` applied: a value sets, None removes."""
    values = dict(current)
    for name, value in changes.items():
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value
    return values


# -- values and filters -------------------------------------------------------------------------------------

ATTR_PREFIX = "attr."


def at_most_definitions(values: Mapping) -> None:
    """A marshmallow validator: a body cannot name more attributes than can be defined."""
    if len(values) > DEFINITIONS_MAX:
        raise ValidationError(f"At most {DEFINITIONS_MAX} attributes.")


def without_attribute_filters(query: Mapping) -> dict:
    """The query arguments other than `attr.<name>` (for the query schema, which refuses names it does not know).

    A malformed one is refused here, by name: a bad attribute name, a repeated one, more than FILTERS_MAX.
    """
    getlist = getattr(query, "getlist", None)
    named = [key for key in query if key.startswith(ATTR_PREFIX)]
    errors = {}
    for key in named:
        name = key[len(ATTR_PREFIX):]
        if len(name) > _SHOWN_NAME_MAX:
            errors["attr"] = [f"No attribute has a name this long ({NAME_RULE})"]
        elif not NAME.fullmatch(name):
            errors[key] = [f"No attribute has this name. {NAME_RULE}"]
        elif getlist is not None and len(getlist(key)) > 1:
            errors[key] = ["Give one value per attribute."]
    if len(named) > FILTERS_MAX:
        errors["attr"] = [f"Filter by at most {FILTERS_MAX} attributes at once."]
    if errors:
        raise ValidationError(errors)
    return {key: query[key] for key in query if not key.startswith(ATTR_PREFIX)}


def attribute_filter_args(query: Mapping) -> dict[str, str]:
    """`{name: text}` of the `attr.<name>=<text>` query arguments (checked by without_attribute_filters)."""
    return {key[len(ATTR_PREFIX):]: query[key] for key in query if key.startswith(ATTR_PREFIX)}


def _definitions(session: Session, names, *, lock: bool) -> dict[str, AttributeDefinition]:
    stmt = select(AttributeDefinition).where(AttributeDefinition.name.in_(sorted(names)))
    if lock:
        # Shared: a definition is not deleted while a value of it is being written (delete_definition).
        stmt = stmt.with_for_update(read=True)
    return {definition.name: definition for definition in session.scalars(stmt)}


def _typed(session: Session, values: Mapping, prefix: str, convert, *, lock: bool) -> dict:
    errors, typed = {}, {}
    for name in values:
        if len(name) > _SHOWN_NAME_MAX:
            errors[prefix] = [f"No attribute has a name this long ({NAME_RULE})"]
        elif not NAME.fullmatch(name):
            errors[f"{prefix}.{name}"] = [f"No attribute has this name. {NAME_RULE}"]
    names = [name for name in values if NAME.fullmatch(name)]
    definitions = _definitions(session, names, lock=lock) if names else {}
    for name in names:
        definition, value = definitions.get(name), values[name]
        if definition is None:
            errors[f"{prefix}.{name}"] = ["No attribute is defined with this name (see /api/v1/contacts/attributes)."]
        elif value is None:
            typed[name] = None
        else:
            try:
                typed[name] = convert(definition, value)
            except ValueError as exc:
                errors[f"{prefix}.{name}"] = [str(exc)]
    if errors:
        raise Unprocessable("The request has invalid fields: " + ", ".join(sorted(errors)) + ".", errors=errors)
    return typed


def checked_values(session: Session, values: Mapping) -> dict:
    """Attribute values from a request, typed by their definitions (None removes); 422 naming `attributes.<name>`.

    Locks the definitions (shared) until the transaction ends, so none of them is deleted meanwhile.
    """
    return _typed(session, values, "attributes", typed_value, lock=True)


def attribute_filters(session: Session, raw: Mapping[str, str]) -> dict:
    """`?attr.<name>=<value>` filters as stored values, typed by their definitions; 422 naming `attr.<name>`."""
    return _typed(session, raw, "attr", filter_value, lock=False)


# -- definitions ----------------------------------------------------------------------------------------------

def _definition(session: Session, name: str) -> AttributeDefinition | None:
    return session.scalar(select(AttributeDefinition).where(AttributeDefinition.name == name))


def create_definition(uow: UnitOfWork, data: Mapping) -> AttributeDefinition:
    """Define a custom attribute; a name in use is a 409, and so is one definition beyond DEFINITIONS_MAX."""
    name = data["name"]
    with uow:
        session = uow.session
        total, taken = session.execute(select(func.count(), func.count().filter(AttributeDefinition.name == name))
                                       .select_from(AttributeDefinition)).one()
        if taken:
            raise Conflict(f"An attribute named {name} is already defined.")
        if total >= DEFINITIONS_MAX:
            raise Conflict(f"At most {DEFINITIONS_MAX} attributes can be defined; delete one you no longer use.")
        definition = AttributeDefinition(
            name=name, type=data["type"], label=data.get("label") or name, description=data.get("description"),
            options=list(data.get("options") or []),
            max_length=(data.get("max_length") or STRING_DEFAULT_MAX) if data["type"] == "string" else None)
        if insert_or_reread(session, definition, reread=lambda: _definition(session, name)) is not None:
            raise Conflict(f"An attribute named {name} is already defined.")
        uow.commit()
        return definition


def get_definition(uow: UnitOfWork, name: str) -> AttributeDefinition:
    """One attribute definition by name (404 when there is none)."""
    with uow:
        definition = _definition(uow.session, name)
        if definition is None:
            raise NotFound(f"No attribute is defined with the name {name}.")
        return definition


def list_definitions(uow: UnitOfWork, *, limit: int, cursor: str | None) -> dict:
    """Attribute definitions, newest first, one page at a time."""
    with uow:
        return paginate(uow.session, select(AttributeDefinition), AttributeDefinition.seq, limit=limit, cursor=cursor)


def delete_definition(uow: UnitOfWork, name: str) -> None:
    """Delete a definition; a 409 while any contact still has a value for it."""
    with uow:
        session = uow.session
        # Delete first: the row lock waits for writers holding the definition (checked_values), and the
        # check below then sees the values they committed. A writer that comes later finds no definition.
        deleted = session.execute(delete(AttributeDefinition).where(AttributeDefinition.name == name))
        if deleted.rowcount == 0:
            raise NotFound(f"No attribute is defined with the name {name}.")
        if session.scalar(select(exists().where(json_has_key(Contact.attributes, name)))):
            raise Conflict(f"Contacts still have a value for {name}. Remove the values first "
                           f'(PATCH /api/v1/contacts/{{id}} with {{"attributes": {{"{name}": null}}}}).')
        uow.commit()
