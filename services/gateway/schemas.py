"""Marshmallow schemas of the gateway's admin API."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from services.common.pagination import PageArgs, sort_field

from .keys import NAME_MAX
from .models import KEY_SORTS


class KeyCreateSchema(Schema):
    """An internal key (`scopes`) or a partner key (`partner_id`, no scopes)."""

    name = fields.String(required=True, validate=validate.Length(min=1, max=NAME_MAX))
    scopes = fields.List(fields.String(), load_default=list,
                         metadata={"description": "`<service>:read|write|*` or `admin`; internal keys only."})
    partner_id = fields.UUID(load_default=None, allow_none=True,
                             metadata={"description": "Makes a partner key bound to this partner."})


class KeySchema(Schema):
    """A key as listed: never its hash or plaintext."""

    id = fields.UUID(dump_only=True)
    name = fields.String(dump_only=True)
    kind = fields.String(dump_only=True, metadata={"enum": ["internal", "partner"]})
    prefix = fields.String(dump_only=True, metadata={"description": "The public part that identifies the key."})
    scopes = fields.List(fields.String(), dump_only=True)
    partner_id = fields.UUID(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    last_used_at = fields.DateTime(dump_only=True, allow_none=True)
    revoked_at = fields.DateTime(dump_only=True, allow_none=True)


class CreatedKeySchema(KeySchema):
    """A new key, with its plaintext shown this one time."""

    key = fields.String(dump_only=True, metadata={"description": "The API key; it cannot be shown again."})


class KeyQuerySchema(PageArgs):
    sort = sort_field(*KEY_SORTS, default=None)  # no sort: newest first, as before sort= existed


class KeyPageSchema(Schema):
    items = fields.List(fields.Nested(KeySchema), dump_only=True)
    next_cursor = fields.String(dump_only=True, allow_none=True)
