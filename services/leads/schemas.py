"""Request and response schemas of the leads API."""
from __future__ import annotations

from marshmallow import Schema, fields, pre_load, validate

from services.common.pagination import PageArgs

from .models import STATUSES

_SOURCE = validate.Regexp(r"^[a-z0-9][a-z0-9_\-]{0,49}$", error="Use 1-50 lower-case letters, digits, '_' or '-'.")


def _text(max_len: int, **kw):
    return fields.String(validate=validate.Length(min=1, max=max_len), allow_none=True, **kw)


class _TrimmedInput(Schema):
    @pre_load
    def _strip_strings(self, data, **_kw):
        # Form tools pad values with spaces; "  Ann@Corp.Example " is a valid address once trimmed.
        if isinstance(data, dict):
            return {k: v.strip() if isinstance(v, str) else v for k, v in data.items()}
        return data


class LeadCreateSchema(_TrimmedInput):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    first_name = _text(100)
    last_name = _text(100)
    company = _text(200)
    job_title = _text(200)
    phone = fields.String(validate=validate.Regexp(r"^\+?[0-9 ()./\-]{3,50}$", error="Not a phone number."), allow_none=True)
    source = fields.String(validate=_SOURCE, allow_none=True)
    campaign = _text(100)


class LeadUpdateSchema(_TrimmedInput):
    status = fields.String(validate=validate.OneOf(["new", "contacted", "qualified", "disqualified"]))
    first_name = _text(100)
    last_name = _text(100)
    company = _text(200)
    job_title = _text(200)
    phone = fields.String(validate=validate.Regexp(r"^\+?[0-9 ()./\-]{3,50}$", error="Not a phone number."), allow_none=True)


class LeadQuerySchema(PageArgs):
    status = fields.String(validate=validate.OneOf(STATUSES))
    source = fields.String(validate=_SOURCE)
    min_score = fields.Integer(validate=validate.Range(min=0, max=100))


class ScoreFactorSchema(Schema):
    plugin = fields.String()
    code = fields.String()
    points = fields.Integer()
    reason = fields.String()


class DegradedSchema(Schema):
    plugin = fields.String()
    hook = fields.String()
    error = fields.String()


class TouchSchema(Schema):
    id = fields.UUID()
    source = fields.String(allow_none=True)
    campaign = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()


class LeadSchema(Schema):
    id = fields.UUID()
    email = fields.String()
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    company = fields.String(allow_none=True)
    job_title = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    campaign = fields.String(allow_none=True)
    status = fields.String()
    score = fields.Integer()
    contact_id = fields.UUID(allow_none=True)
    touch_count = fields.Integer()
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    conversion_requested_at = fields.AwareDateTime(allow_none=True)
    converted_at = fields.AwareDateTime(allow_none=True)


class LeadDetailSchema(LeadSchema):
    score_factors = fields.List(fields.Nested(ScoreFactorSchema))
    score_degraded = fields.List(fields.Nested(DegradedSchema))
    touches = fields.List(fields.Nested(TouchSchema))


class LeadPageSchema(Schema):
    items = fields.List(fields.Nested(LeadSchema))
    next_cursor = fields.String(allow_none=True)


class PluginSchema(Schema):
    name = fields.String()
    source = fields.String()
    hooks = fields.List(fields.String())


class PluginListSchema(Schema):
    items = fields.List(fields.Dict())
    errors = fields.List(fields.Dict())
