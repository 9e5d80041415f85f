"""Request and response schemas of the contacts import API."""
from __future__ import annotations

import base64
import binascii
import json

from marshmallow import RAISE, Schema, ValidationError, fields, validate
from werkzeug.datastructures import FileStorage

from services.common.pagination import PageArgs, sort_field

from . import imports
from .models import IMPORT_FIELD_MAX, IMPORT_STATUSES

HEADER_MAX = 200


class Base64File(fields.String):
    """A file's bytes as standard base64 (RFC 4648 §4), so a file that is not UTF-8 arrives as it is."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError("Not valid base64: send the file's bytes base64-encoded (RFC 4648).") from None


class UploadedFile(fields.Field):
    """A multipart file part (`curl -F file=@people.csv`), read into bytes: the part's exact bytes, undecoded."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, FileStorage):
            raise ValidationError("Send the CSV as a file part, e.g. curl -F file=@people.csv.")
        return value.stream.read()


class JsonMapping(fields.Dict):
    """A mapping object; in a multipart body its part is JSON text (a field, or a file: -F mapping=@mapping.json)."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            if isinstance(value, FileStorage):
                value = value.stream.read().decode("utf-8")
            if isinstance(value, str):
                value = json.loads(value)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise ValidationError('Not JSON: send a JSON object, e.g. {"E-mail": "email"}.') from None
        return super()._deserialize(value, attr, data, **kwargs)


_FILE_RULES = f"UTF-8 (a byte-order mark is allowed), a header row, at most {imports.MAX_ROWS:,} data rows."


def _mapping(field_class=fields.Dict) -> fields.Dict:
    """The mapping field (a new one per schema: marshmallow binds a field to one schema)."""
    return field_class(
        keys=fields.String(validate=validate.Length(min=1, max=HEADER_MAX)),
        values=fields.String(validate=validate.Length(min=1, max=IMPORT_FIELD_MAX)), required=True,
        metadata={"description": "CSV header -> contact field (" + ", ".join(imports.TARGETS) + "); email is "
                                 "required. Unmapped columns are ignored.",
                  "example": {"E-mail": "email", "First name": "first_name", "Company": "company"}})


class ImportUploadSchema(Schema):
    """The multipart/form-data body: the file as it is, the mapping as a JSON part."""

    class Meta:
        unknown = RAISE

    file = UploadedFile(required=True, metadata={"type": "string", "format": "binary",
                                                 "description": "The CSV file: " + _FILE_RULES})
    mapping = _mapping(JsonMapping)


class ImportCreateSchema(Schema):
    """The JSON body: the file base64-encoded, within the 1 MiB a JSON body may have."""

    class Meta:
        unknown = RAISE

    file = Base64File(required=True, metadata={"description": "The CSV file, base64-encoded: " + _FILE_RULES,
                                               "format": "byte"})
    mapping = _mapping()


class ImportSchema(Schema):
    id = fields.UUID()
    status = fields.String(metadata={"enum": list(IMPORT_STATUSES)})
    mapping = fields.Dict(keys=fields.String(), values=fields.String())
    total_rows = fields.Integer(metadata={"description": "Data rows in the file (blank rows not counted)."})
    processed = fields.Integer(metadata={"description": "Data rows handled so far."})
    created = fields.Integer()
    updated = fields.Integer()
    unchanged = fields.Integer()
    failed = fields.Integer(metadata={"description": "Rows refused; `/errors` lists why."})
    progress = fields.Function(imports.progress, metadata={"type": "number",
                                                           "description": "Percent of the rows handled, e.g. 42.5."})
    error = fields.String(allow_none=True, metadata={"description": "Why a failed import stopped."})
    created_at = fields.AwareDateTime()
    started_at = fields.AwareDateTime(allow_none=True)
    finished_at = fields.AwareDateTime(allow_none=True)


class ImportQuerySchema(PageArgs):
    status = fields.String(validate=validate.OneOf(IMPORT_STATUSES))
    sort = sort_field(*imports.SORTS, default=None)  # no sort: newest first


class ImportPageSchema(Schema):
    items = fields.List(fields.Nested(ImportSchema))
    next_cursor = fields.String(allow_none=True)


class ImportErrorSchema(Schema):
    row = fields.Integer(metadata={"description": "The row as a spreadsheet numbers it: the header is row 1."})
    field = fields.String(allow_none=True, metadata={"description": "The contact field; null for the row as a whole."})
    message = fields.String()


class ImportErrorPageSchema(Schema):
    items = fields.List(fields.Nested(ImportErrorSchema))
    next_cursor = fields.String(allow_none=True)
