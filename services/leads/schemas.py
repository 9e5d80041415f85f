"""Request and response schemas of the leads API."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from services.common.emails import validate_email
from services.common.pagination import PageArgs, sort_field
from services.common.schemas import PHONE, SLUG, DegradedSchema, ScoreFactorSchema, TrimmedInput

from .models import LEAD_SORTS, STATUSES


def _text(max_len: int, **kw):
    return fields.String(validate=validate.Length(min=1, max=max_len), allow_none=True, **kw)


class LeadCreateSchema(TrimmedInput):
    email = fields.Email(required=True, validate=[validate.Length(max=254), validate_email])
    first_name = _text(100)
    last_name = _text(100)
    company = _text(200)
    job_title = _text(200)
    phone = fields.String(validate=PHONE, allow_none=True)
    source = fields.String(validate=SLUG, allow_none=True)
    campaign = _text(100)


class LeadUpdateSchema(TrimmedInput):
    status = fields.String(validate=validate.OneOf(["new", "contacted", "qualified", "disqualified"]))
    first_name = _text(100)
    last_name = _text(100)
    company = _text(200)
    job_title = _text(200)
    phone = fields.String(validate=PHONE, allow_none=True)


class LeadQuerySchema(PageArgs):
    status = fields.String(validate=validate.OneOf(STATUSES))
    source = fields.String(validate=SLUG)
    min_score = fields.Integer(validate=validate.Range(min=0, max=100))
    sort = sort_field(*LEAD_SORTS, default=None)  # no sort: newest first, as before sort= existed


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
