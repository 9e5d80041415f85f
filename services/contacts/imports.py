"""CSV imports of contacts: what a file and its column mapping must be, and the use cases that store an import
and read its progress. How a row becomes contact values is import_rows.py; the worker applies imports
(import_jobs.py, import_chunks.py).
"""
from __future__ import annotations

import codecs
import csv
import io
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select

from services.common.db import new_id, utcnow
from services.common.pagination import decode_cursor, encode_cursor, paginate
from services.common.problems import NotFound, Unprocessable
from services.common.uow import UnitOfWork

from .attributes import NAME as ATTRIBUTE_NAME
from .models import PROFILE_FIELDS, AttributeDefinition, ContactImport, ContactImportError, ContactImportFile

MAX_ROWS = 100_000
# The largest file the service takes. Over HTTP the upload limit (CRM_MAX_UPLOAD_BYTES, 32 MiB by default; 1 MiB
# for JSON) is usually reached first; the CLI reads files up to this size.
MAX_FILE_BYTES = 64 * 1024 * 1024
TARGETS = ("email",) + PROFILE_FIELDS
TAGS = "tags"
ATTRIBUTE_PREFIX = "attributes."
TARGET_RULE = ", ".join(TARGETS + (TAGS,)) + f" or {ATTRIBUTE_PREFIX}<name> (a defined attribute)"
PENDING, RUNNING, COMPLETED, FAILED = "pending", "running", "completed", "failed"
# The mapping's own problems (nothing mapped to email) are reported under this key beside the headers.
MAPPING_WIDE = "_schema"


def attribute_name(target: str) -> str | None:
    """The attribute a mapping target names (`attributes.tier` -> `tier`), else None."""
    return target.removeprefix(ATTRIBUTE_PREFIX) if target.startswith(ATTRIBUTE_PREFIX) else None


def _known_target(target: str) -> bool:
    name = attribute_name(target)
    return target in TARGETS or target == TAGS or (name is not None and ATTRIBUTE_NAME.fullmatch(name) is not None)


# -- the file and its mapping ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Upload:
    """A readable CSV with a header row, and the mapping checked against it."""

    text: str
    mapping: dict[str, str]  # header -> contact field, headers as the file spells them (trimmed)
    columns: dict[str, int]  # contact field -> its column's position
    total_rows: int


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) of every record, the header being row 1; raises csv.Error for malformed CSV."""
    return enumerate(csv.reader(io.StringIO(text, newline=""), strict=True), start=1)


def blank(cells: list[str]) -> bool:
    """True when no cell has any text."""
    return not "".join(cells).strip()


def data_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) of the data rows: after the header, blank rows (no cell with text) left out."""
    records = _records(text)
    next(records, None)
    return ((number, cells) for number, cells in records if not blank(cells))


def _decode(data: bytes) -> str:
    try:
        text = data.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"The file is not UTF-8 text (byte {exc.start + 1} is not valid UTF-8); save it as "
                         "CSV UTF-8.") from None
    if "\x00" in text:
        raise ValueError("The file contains the NUL character; it is not a text file.")
    return text


def _read_header(text: str) -> tuple[list[str], int]:
    """The header's cells (trimmed) and the number of data rows; ValueError when unreadable or too long."""
    number, count = 0, 0
    try:
        for number, cells in _records(text):
            if number == 1:
                header = cells
                continue
            if not blank(cells):
                count += 1
                if count > MAX_ROWS:
                    raise ValueError(f"The file has more than {MAX_ROWS:,} data rows; split it.")
    except csv.Error as exc:
        raise ValueError(f"The file is not valid CSV near row {number + 1}: {exc}.") from None
    if number == 0 or blank(header):
        raise ValueError("The file has no header row: its first row must name the columns.")
    return [cell.strip() for cell in header], count


def _check_mapping(mapping: Mapping[str, str], header: list[str] | None) -> tuple[dict, dict, dict]:
    """(the mapping with trimmed headers, field -> column position, errors by header); see read_upload.

    Without a header (the file is unreadable) only the fields are checked.
    """
    errors: dict[str, list[str]] = {}
    trimmed: dict[str, str] = {}
    columns: dict[str, int] = {}
    mapped_from: dict[str, str] = {}
    for raw_header, target in mapping.items():
        name = raw_header.strip()
        problems = []
        if not _known_target(target):
            problems.append(f"Unknown contact field {target!r}; map to one of: {TARGET_RULE}.")
        elif target in mapped_from:
            problems.append(f"{target} is already mapped from {mapped_from[target]!r}.")
        else:
            mapped_from[target] = name
        if header is not None:
            if name not in header:
                problems.append("Not a column of the file's header row.")
            elif header.count(name) > 1:
                problems.append("The header row has this column more than once.")
        if problems:
            errors[raw_header] = problems
            continue
        trimmed[name] = target
        if header is not None:
            columns[target] = header.index(name)
    if "email" not in mapping.values():
        errors[MAPPING_WIDE] = ["Map a column to email: it is what rows are matched on."]
    return trimmed, columns, errors


def read_upload(data: bytes, mapping: Mapping[str, str]) -> Upload:
    """Check a CSV file and its mapping (header -> contact field) before anything is stored.

    Refused with a 422 naming `file` (too large, not UTF-8, not CSV, no header row, more than MAX_ROWS data
    rows) and `mapping` (by header: unknown field, a column the header lacks, a field mapped twice; and under
    `_schema` when nothing is mapped to email). An optional UTF-8 byte-order mark is dropped. Whether the
    attributes it maps to are defined is checked by submit_import, which reads the database.
    """
    errors: dict = {}
    header = text = None
    total = 0
    try:
        if len(data) > MAX_FILE_BYTES:
            raise ValueError(f"The file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; split it.")
        text = _decode(data)
        header, total = _read_header(text)
    except ValueError as exc:
        errors["file"] = [str(exc)]
    checked, columns, mapping_errors = _check_mapping(mapping, header)
    if mapping_errors:
        errors["mapping"] = mapping_errors
    if errors:
        raise Unprocessable("The import has invalid fields: " + ", ".join(sorted(errors)) + ".", errors=errors)
    return Upload(text=text, mapping=checked, columns=columns, total_rows=total)


# -- the stored file and the attributes it maps to ----------------------------------------------------------

def header_of(text: str) -> list[str]:
    """The header row's cells, trimmed (of a file read_upload accepted)."""
    return [cell.strip() for cell in next(csv.reader(io.StringIO(text, newline="")))]


def mapped_attributes(mapping: Mapping[str, str]) -> list[str]:
    """The attribute names a mapping's targets name, sorted."""
    return sorted(name for name in map(attribute_name, mapping.values()) if name is not None)


def attribute_definitions(session, names, *, lock: bool = False) -> dict[str, AttributeDefinition]:
    """The definitions of these attribute names, by name; `lock` holds them (shared) until the transaction ends.

    Held while a chunk writes values, so a definition is not deleted meanwhile (attributes.delete_definition
    waits for the lock, then sees the values and refuses).
    """
    if not names:
        return {}
    stmt = select(AttributeDefinition).where(AttributeDefinition.name.in_(sorted(names)))
    if lock:
        stmt = stmt.with_for_update(read=True)
    return {definition.name: definition for definition in session.scalars(stmt)}


# -- use cases ------------------------------------------------------------------------------------------------

def submit_import(uow: UnitOfWork, data: bytes, mapping: Mapping[str, str], *, requested_by: str,
                  correlation_id: str | None = None, lease_owner: str | None = None,
                  lease_seconds: float = 60.0) -> ContactImport:
    """Check and store an import for the worker (pending); `lease_owner` holds it for a caller that runs it itself.

    The attributes the mapping names must be defined (422 naming the header under `mapping`). A file without
    data rows is completed at once.
    """
    upload = read_upload(data, mapping)
    now = utcnow()
    contact_import = ContactImport(id=new_id(), status=PENDING, mapping=upload.mapping, total_rows=upload.total_rows,
                                   processed=0, created=0, updated=0, unchanged=0, failed=0,
                                   requested_by=requested_by, correlation_id=correlation_id, created_at=now,
                                   updated_at=now)
    if upload.total_rows == 0:
        contact_import.status, contact_import.started_at, contact_import.finished_at = COMPLETED, now, now
    elif lease_owner is not None:
        contact_import.status, contact_import.started_at = RUNNING, now
        contact_import.lease_owner, contact_import.lease_until = lease_owner, now + timedelta(seconds=lease_seconds)
    with uow:
        names = mapped_attributes(upload.mapping)
        undefined = set(names) - set(attribute_definitions(uow.session, names))
        if undefined:
            errors = {header: ["No attribute is defined with this name (see /api/v1/contacts/attributes)."]
                      for header, target in upload.mapping.items() if attribute_name(target) in undefined}
            raise Unprocessable("The import has invalid fields: mapping.", errors={"mapping": errors})
        uow.session.add(contact_import)
        if upload.total_rows:
            uow.session.add(ContactImportFile(import_id=contact_import.id, content=upload.text))
        uow.commit()
    return contact_import


def get_import(uow: UnitOfWork, import_id: uuid.UUID) -> ContactImport:
    """One import with its counts (404 when unknown)."""
    with uow:
        found = uow.session.scalar(select(ContactImport).where(ContactImport.id == import_id))
        if found is None:
            raise NotFound(f"No import has the id {import_id}.")
        return found


# What the list may be sorted by (`sort=`); without one, newest first.
SORTS = {"created_at": ContactImport.created_at, "finished_at": ContactImport.finished_at,
         "total_rows": ContactImport.total_rows, "failed": ContactImport.failed}


def list_imports(uow: UnitOfWork, *, limit: int, cursor: str | None, status: str | None = None,
                 sort: str | None = None) -> dict:
    """Imports (by default newest first), optionally in one status, one page at a time."""
    stmt = select(ContactImport)
    if status:
        stmt = stmt.where(ContactImport.status == status)
    with uow:
        return paginate(uow.session, stmt, ContactImport.seq, limit=limit, cursor=cursor, sort=sort, columns=SORTS)


def list_import_errors(uow: UnitOfWork, import_id: uuid.UUID, *, limit: int, cursor: str | None) -> dict:
    """The values an import refused, by row number, one page at a time (404 for an unknown import)."""
    after = decode_cursor(cursor)
    stmt = select(ContactImportError).where(ContactImportError.import_id == import_id)
    if after is not None:
        stmt = stmt.where(ContactImportError.seq > after)
    with uow:
        # Chunks are applied in file order and each writes its errors in row order, so seq is row order.
        rows = list(uow.session.scalars(stmt.order_by(ContactImportError.seq).limit(limit + 1)))
        if not rows and uow.session.scalar(select(ContactImport.seq).where(ContactImport.id == import_id)) is None:
            raise NotFound(f"No import has the id {import_id}.")
    next_cursor = encode_cursor(rows[limit - 1].seq) if len(rows) > limit else None
    return {"items": rows[:limit], "next_cursor": next_cursor}


def progress(contact_import: ContactImport) -> float:
    """Percent of the data rows handled, to one decimal."""
    if contact_import.status == COMPLETED or not contact_import.total_rows:
        return 100.0
    return round(100.0 * contact_import.processed / contact_import.total_rows, 1)


def drop_file(session, import_id: uuid.UUID) -> None:
    """Delete an import's file: once it has ended, the service keeps no copy of the personal data it held."""
    session.execute(delete(ContactImportFile).where(ContactImportFile.import_id == import_id))
