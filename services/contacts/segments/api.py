"""HTTP entrypoints of saved segments: parse, call one use case in service.py, serialise (docs/segments.md)."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, fields, validate

from services.common.etags import Precondition, etag
from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import current_principal, record_or_receipt, requires
from services.common.pagination import DEFAULT_LIMIT, MAX_LIMIT, PageArgs, sort_field
from services.common.schemas import CURRENCY, Trimmed
from services.common.web import read_uow, runtime, uow

from ..models import SEGMENT_DESCRIPTION_MAX, SEGMENT_NAME_MAX, IdempotencyRecord
from . import service

blp = Blueprint("segments", __name__, url_prefix="/api/v1/segments",
                description="Saved rule sets over contacts, their tags, attributes, consent, purchases and measures; "
                            "members and counts computed live.")

_ETAG_HEADER = {"ETag": {"description": 'The segment\'s version as a weak tag, `W/"<version>"`; send it back in '
                                        "If-Match.", "schema": {"type": "string"}}}
_RULES = {"description": 'The rule document: `{"all": [...]}`, `{"any": [...]}` or `{"not": ...}` over conditions '
                         '`{"field", "op", "value"}` (docs/segments.md). A mistake is a 422 naming its path, e.g. '
                         "`rules.all.1.op`."}


class SegmentInSchema(Schema):
    class Meta:
        unknown = RAISE

    name = Trimmed(required=True, validate=validate.Length(min=1, max=SEGMENT_NAME_MAX),
                   metadata={"description": "Unique among segments."})
    description = Trimmed(load_default=None, allow_none=True, validate=validate.Length(min=1, max=SEGMENT_DESCRIPTION_MAX))
    rules = fields.Dict(keys=fields.String(), required=True, metadata=_RULES)
    currency = fields.String(load_default=None, validate=CURRENCY, metadata={
        "description": "The currency of the money fields and measures the rules read; default CRM_BASE_CURRENCY."})


class SegmentUpdateSchema(Schema):
    class Meta:
        unknown = RAISE

    name = Trimmed(validate=validate.Length(min=1, max=SEGMENT_NAME_MAX))
    description = Trimmed(allow_none=True, validate=validate.Length(min=1, max=SEGMENT_DESCRIPTION_MAX))
    rules = fields.Dict(keys=fields.String(), metadata={
        **_RULES, "description": _RULES["description"] + " New rules announce nothing; the next analytics refresh "
                                                          "publishes who entered and who left."})
    currency = fields.String(validate=CURRENCY)


class SegmentSchema(Schema):
    id = fields.UUID()
    name = fields.String()
    description = fields.String(allow_none=True)
    rules = fields.Dict(keys=fields.String())
    currency = fields.String()
    member_count = fields.Integer(allow_none=True, metadata={
        "description": "Members at the last analytics refresh; null before the first (GET .../count is live)."})
    members_refreshed_at = fields.AwareDateTime(allow_none=True)
    created_by = fields.String(metadata={"description": "The API key that created it."})
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    version = fields.Integer()


class SegmentQuerySchema(PageArgs):
    sort = sort_field(*service.SORTS, default=None)
    currency = fields.String(validate=CURRENCY)


class SegmentPageSchema(Schema):
    items = fields.List(fields.Nested(SegmentSchema))
    next_cursor = fields.String(allow_none=True)


class MemberSchema(Schema):
    id = fields.UUID()
    email = fields.String()
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    abc_class = fields.String(allow_none=True)
    recency_score = fields.Integer(allow_none=True)
    frequency_score = fields.Integer(allow_none=True)
    monetary_score = fields.Integer(allow_none=True)
    rfm_segment = fields.String(allow_none=True)
    clv = fields.Decimal(as_string=True, allow_none=True)
    predicted_margin = fields.Decimal(as_string=True, allow_none=True)
    current_profit = fields.Decimal(as_string=True, allow_none=True)
    quadrant = fields.String(allow_none=True)
    pyramid_level = fields.String(allow_none=True)
    stage = fields.String(allow_none=True)


class MemberPageSchema(Schema):
    items = fields.List(fields.Nested(MemberSchema), metadata={
        "description": "Contacts the rules match now, in the order they were created; measures from the current "
                       "snapshot of the segment's currency (null before the first refresh)."})
    next_cursor = fields.String(allow_none=True)


class CountSchema(Schema):
    segment_id = fields.UUID()
    count = fields.Integer(metadata={"description": "Contacts the rules match now."})
    as_of = fields.AwareDateTime(metadata={"description": "The instant relative times were counted from."})
    member_count = fields.Integer(allow_none=True, metadata={"description": "Members at the last refresh."})
    members_refreshed_at = fields.AwareDateTime(allow_none=True)


class PreviewInSchema(Schema):
    class Meta:
        unknown = RAISE

    rules = fields.Dict(keys=fields.String(), required=True, metadata=_RULES)
    currency = fields.String(load_default=None, validate=CURRENCY)
    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT),
                           metadata={"description": "Members shown (the first page)."})


class PreviewSchema(MemberPageSchema):
    rules = fields.Dict(keys=fields.String(), metadata={"description": "The rules in their canonical form."})
    currency = fields.String()
    as_of = fields.AwareDateTime()
    count = fields.Integer()


def _shown(segment):
    """The segment, or for a key without `contacts:read` only its id and version."""
    return record_or_receipt(service.READ_SCOPE, segment, id=segment.id, version=segment.version)


def _base_currency() -> str:
    return runtime().settings.base_currency


@blp.route("")
class Segments(MethodView):
    @requires("contacts:read")
    @blp.arguments(SegmentQuerySchema, location="query")
    @blp.response(200, SegmentPageSchema)
    def get(self, args):
        """List segments, newest first or by `sort`, optionally of one currency."""
        return service.list_segments(read_uow(), **args)

    @requires("contacts:write")
    @idempotent(IdempotencyRecord)
    @blp.arguments(SegmentInSchema)
    @blp.response(201, SegmentSchema, headers=_ETAG_HEADER)
    @blp.alt_response(409, description="Another segment has this name.")
    @blp.doc(parameters=[HEADER_PARAMETER])
    def post(self, data):
        """Save a segment; its rules are checked (422 naming each mistake by path) and stored in canonical form."""
        segment = service.create_segment(uow(), data, created_by=current_principal().key_id,
                                         base_currency=_base_currency())
        return _shown(segment), 201, {"ETag": etag(segment.version), "Location": f"{blp.url_prefix}/{segment.id}"}


@blp.route("/preview")
class SegmentPreview(MethodView):
    @requires("contacts:read")
    @blp.arguments(PreviewInSchema)
    @blp.response(200, PreviewSchema)
    def post(self, data):
        """Try rules without saving them: how many contacts they match now and the first page of them."""
        return service.preview_segment(read_uow(), data["rules"], currency=data["currency"] or _base_currency(),
                                       limit=data["limit"])


@blp.route("/<uuid:segment_id>")
class SegmentById(MethodView):
    @requires("contacts:read")
    @blp.response(200, SegmentSchema, headers=_ETAG_HEADER)
    @blp.alt_response(404, description="No segment has this id.")
    def get(self, segment_id):
        """One segment."""
        segment = service.get_segment(read_uow(), segment_id)
        return segment, 200, {"ETag": etag(segment.version)}

    @requires("contacts:write")
    @blp.arguments(SegmentUpdateSchema)
    @blp.response(200, SegmentSchema, headers=_ETAG_HEADER)
    @blp.alt_response(404, description="No segment has this id.")
    @blp.alt_response(409, description="Another segment has the new name.")
    @blp.alt_response(412, description="If-Match named a version that is no longer current.")
    def patch(self, changes, segment_id):
        """Change a segment (If-Match refuses lost updates); new rules take effect at once for reads, and the
        next refresh announces who entered and who left."""
        segment = service.update_segment(uow(), segment_id, changes, precondition=Precondition.from_request())
        return _shown(segment), 200, {"ETag": etag(segment.version)}

    @requires("contacts:write")
    @blp.response(204)
    @blp.alt_response(404, description="No segment has this id.")
    @blp.alt_response(412, description="If-Match named a version that is no longer current.")
    def delete(self, segment_id):
        """Delete a segment and its recorded membership (no crm.segment.left is published)."""
        service.delete_segment(uow(), segment_id, precondition=Precondition.from_request())


@blp.route("/<uuid:segment_id>/members")
class SegmentMembers(MethodView):
    @requires("contacts:read")
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, MemberPageSchema)
    @blp.alt_response(404, description="No segment has this id.")
    @blp.alt_response(422, description="A bad cursor, or the saved rules name a custom attribute since deleted.")
    def get(self, args, segment_id):
        """The contacts the segment's rules match now (computed in SQL), with their measures."""
        return service.segment_members(read_uow(), segment_id, **args)


@blp.route("/<uuid:segment_id>/count")
class SegmentCount(MethodView):
    @requires("contacts:read")
    @blp.response(200, CountSchema)
    @blp.alt_response(404, description="No segment has this id.")
    @blp.alt_response(422, description="The saved rules name a custom attribute since deleted.")
    def get(self, segment_id):
        """How many contacts the segment's rules match now, beside the count at the last refresh."""
        return service.segment_count(read_uow(), segment_id)
