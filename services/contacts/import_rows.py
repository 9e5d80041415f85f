"""How a data row of an import becomes contact values, or is refused value by value (row number, field, why).

A row is held to the same validators and limits as the create request (schemas.py), so a value the API refuses
is refused here too, and reported instead of stopping the import.
"""
from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from marshmallow import ValidationError, validate

from services.common.emails import MAX_LENGTH as MAX_EMAIL_KEY
from services.common.emails import InvalidEmail, normalize_email, validate_email

from .attributes import filter_value
from .imports import TAGS, TARGETS, attribute_name, blank, header_of
from .models import IMPORT_MESSAGE_MAX
from .schemas import ContactCreateSchema
from .tags import TAGS_PER_RECORD, normalize_tag, tag_set

# Tags in one cell: separated by `;` (as the export writes them) or `,`.
_TAG_SEPARATORS = re.compile(r"[;,]")
TOO_MANY_TAGS = f"The contact would have more than {TAGS_PER_RECORD} tags."

# The create request's validators, per field: a row is held to exactly what the API accepts.
_API_FIELDS = ContactCreateSchema().fields
_VALIDATORS = {name: tuple(v for v in _API_FIELDS[name].validators if v is not validate_email) for name in TARGETS}

# Plain addresses (ASCII letters, digits, `_+-` and dots in the local part; host name labels): every one passes
# validate.Email. Most cells of a file are such, and a pattern is far cheaper than the validators' calls.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TOP_LABEL = r"[A-Za-z0-9][A-Za-z0-9-]{0,61}[A-Za-z0-9]"  # two characters at least
_PLAIN_ADDRESS = re.compile(rf"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@(?:{_LABEL}\.)+{_TOP_LABEL}\Z", re.ASCII)


def _shortcut(validators) -> tuple[int, re.Pattern | None] | None:
    """(length limit, pattern): a non-empty value within the limit that matches the pattern passes `validators`.

    None when a validator has no such shortcut. A value outside the shortcut still goes through the validators
    themselves, so what is refused, and the message why, stay theirs.
    """
    limit, pattern = sys.maxsize, None
    for validator in validators:
        if isinstance(validator, validate.Length) and validator.equal is None and (validator.min or 0) <= 1:
            limit = min(limit, validator.max if validator.max is not None else sys.maxsize)
        elif isinstance(validator, validate.Regexp) and pattern is None:
            pattern = validator.regex
        elif isinstance(validator, validate.Email) and pattern is None:
            pattern = _PLAIN_ADDRESS
        else:
            return None
    return limit, pattern


@dataclass
class RowReader:
    """Turns the cells of one data row into contact values, or into (field, message) errors.

    An empty cell is no value: the contact keeps what it has. Tags are added to the contact's tags; attribute
    values are typed by their definitions (`definitions`, by name; a name without one refuses its values).
    Domains are normalised once per import (IDNA is the slow part of normalize_email), so a file of one
    company's addresses pays for it once.
    """

    columns: Mapping[str, int]  # mapping target -> column position
    width: int  # cells in the header row
    definitions: Mapping[str, object] = field(default_factory=dict)
    _domains: dict[str, str] = field(default_factory=dict)

    def email_key(self, address: str) -> str:
        """normalize_email(address), with the domain's IDNA form cached; raises InvalidEmail."""
        if not address.isascii():
            return normalize_email(address)
        local, at, domain = address.strip().lower().rpartition("@")
        if not at or not local or not domain:
            return normalize_email(address)  # raises with the usual message
        ascii_domain = self._domains.get(domain)
        if ascii_domain is None:
            ascii_domain = self._domains[domain] = normalize_email("x@" + domain).rpartition("@")[2]
        key = f"{local}@{ascii_domain}"
        return key if len(key) <= MAX_EMAIL_KEY else normalize_email(address)  # too long: raises

    def key_of(self, cells: list[str]) -> str | None:
        """The row's e-mail key, or None when it has no valid address (for finding repeated addresses)."""
        index = self.columns["email"]
        value = cells[index].strip() if index < len(cells) else ""
        try:
            return self.email_key(value) if value else None
        except InvalidEmail:
            return None

    def __post_init__(self):
        # One step per mapped column, chosen once: a row runs straight through them.
        self._steps = [(target, index, self._step(target)) for target, index in self.columns.items()]

    def read(self, cells: list[str]) -> tuple[dict, list[tuple[str | None, str]]]:
        """(values, errors): values hold email, email_normalized and each non-empty mapped field.

        `tags` is a sorted list, `attributes` a dict of stored values.
        """
        values, errors = {}, []
        if len(cells) > self.width and not blank(cells[self.width:]):
            errors.append((None, f"The row has {len(cells)} cells; the header row has {self.width}."))
        for target, index, step in self._steps:
            value = cells[index].strip() if index < len(cells) else ""
            if not value:
                if target == "email":
                    errors.append(("email", "An e-mail address is required: rows are matched on it."))
                continue
            try:
                step(values, value)
            except ValidationError as exc:
                errors.append((target, " ".join(exc.messages)))
            except (InvalidEmail, ValueError) as exc:
                errors.append((target, str(exc)))
        return values, errors

    def _step(self, target: str):
        """What a non-empty cell of `target` goes through: checks, then its value put into `values`."""
        name = attribute_name(target)
        if name is not None:
            return lambda values, value: self._attribute(values, name, value)
        if target == TAGS:
            return _tags
        validators = _VALIDATORS[target]
        limit, pattern = _shortcut(validators) or (-1, None)

        def field_value(values: dict, value: str) -> None:
            if len(value) > limit or (pattern is not None and pattern.match(value) is None):
                for validator in validators:
                    validator(value)
            if target == "email":
                values["email_normalized"] = self.email_key(value)
            values[target] = value

        return field_value

    def _attribute(self, values: dict, name: str, value: str) -> None:
        definition = self.definitions.get(name)
        if definition is None:
            raise ValueError("No attribute is defined with this name (see /api/v1/contacts/attributes).")
        values.setdefault("attributes", {})[name] = filter_value(definition, value)


def _tags(values: dict, value: str) -> None:
    values[TAGS] = tag_set(normalize_tag(tag) for tag in _TAG_SEPARATORS.split(value) if tag.strip())


@dataclass(frozen=True)
class CheckedChunk:
    """A chunk of data rows once read: the rows to apply (one per address) and the refused values."""

    rows: list[dict]  # the values of RowReader.read, with `row`
    errors: list[dict]  # {"row", "field", "message"}
    failed: int  # rows refused (a row with two bad values counts once)
    size: int  # data rows in the chunk


def check_chunk(reader: RowReader, chunk: list[tuple[int, list[str]]], first_rows: dict[str, int]) -> CheckedChunk:
    """Read a chunk of (row number, cells); `first_rows` (address key -> row that had it first) grows with it.

    A row whose address an earlier row of the file had is refused, naming that row.
    """
    rows, errors, failed = [], [], 0
    for number, cells in chunk:
        values, problems = reader.read(cells)
        key = values.get("email_normalized")
        if key is not None:
            first = first_rows.setdefault(key, number)
            if first != number:
                repeated = f"Row {first} has the same e-mail address; each address may appear once per file."
                problems.append(("email", repeated))
        if problems:
            failed += 1
            errors.extend(row_error(number, name, message) for name, message in problems)
        else:
            values["row"] = number
            rows.append(values)
    return CheckedChunk(rows=rows, errors=errors, failed=failed, size=len(chunk))


def row_error(number: int, name: str | None, message: str) -> dict:
    """One refused value as it is stored."""
    return {"row": number, "field": name, "message": message[:IMPORT_MESSAGE_MAX]}


def resume_point(reader: RowReader, rows: Iterator[tuple[int, list[str]]], done: int) -> dict[str, int]:
    """Skip the `done` data rows already applied; returns their address keys (key -> first row) to go on with."""
    first_rows: dict[str, int] = {}
    for number, cells in itertools.islice(rows, done):
        key = reader.key_of(cells)
        if key is not None:
            first_rows.setdefault(key, number)
    return first_rows


def reader_for(text: str, mapping: Mapping[str, str], definitions: Mapping[str, object]) -> RowReader:
    """The RowReader of a stored import: its mapping's columns located in its file's header."""
    header = header_of(text)
    return RowReader(columns={target: header.index(name) for name, target in mapping.items()}, width=len(header),
                     definitions=definitions)
