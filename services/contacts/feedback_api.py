"""HTTP entrypoints for survey answers and their figures (NPS, CSAT); the rules are in feedback.py."""
from __future__ import annotations

import re
from datetime import date
from typing import ClassVar

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import current_principal, record_or_receipt, requires
from services.common.pagination import PageArgs, sort_field
from services.common.schemas import Moment, Trimmed
from services.common.web import read_uow, uow

from . import feedback
from .models import FEEDBACK_COMMENT_MAX, FEEDBACK_LABEL_MAX, IdempotencyRecord
from .service import READ_SCOPE

SEGMENT_MAX = 50

blp = Blueprint("feedback", __name__, url_prefix="/api/v1/contacts",
                description="Survey answers of a contact: NPS about the relationship, CSAT about one interaction "
                            "or purchase.")
analytics_blp = Blueprint("feedback_analytics", __name__, url_prefix="/api/v1/analytics",
                          description="Figures over many contacts.")


class FeedbackInSchema(Schema):
    class Meta:
        unknown = RAISE

    kind = fields.String(required=True, validate=validate.OneOf(feedback.KINDS))
    score = fields.Integer(required=True, strict=True, metadata={"description": "NPS 0-10, CSAT 1-5."})
    comment = Trimmed(load_default=None, allow_none=True, validate=validate.Length(min=1, max=FEEDBACK_COMMENT_MAX))
    interaction_id = fields.UUID(load_default=None, allow_none=True, metadata={
        "description": "CSAT only: the interaction of this contact that is rated (or `purchase_id`)."})
    purchase_id = fields.UUID(load_default=None, allow_none=True, metadata={
        "description": "CSAT only: the purchase of this contact that is rated (or `interaction_id`)."})
    occurred_at = Moment(load_default=None, metadata={
        "description": "When the person answered (with an offset); default now; at most 5 minutes ahead."})
    survey = Trimmed(load_default=None, allow_none=True, validate=validate.Length(min=1, max=FEEDBACK_LABEL_MAX),
                     metadata={"description": "Which survey asked, e.g. `q3-relationship`."})
    channel = Trimmed(load_default=None, allow_none=True, validate=validate.Length(min=1, max=FEEDBACK_LABEL_MAX),
                      metadata={"description": "How it was asked, e.g. `email`, `in-app`."})


class FeedbackSchema(Schema):
    id = fields.UUID()
    contact_id = fields.UUID()
    kind = fields.String()
    score = fields.Integer()
    comment = fields.String(allow_none=True)
    interaction_id = fields.UUID(allow_none=True)
    purchase_id = fields.UUID(allow_none=True)
    occurred_at = fields.AwareDateTime()
    survey = fields.String(allow_none=True)
    channel = fields.String(allow_none=True)
    recorded_by = fields.String(metadata={"description": "The API key that recorded it."})
    recorded_at = fields.AwareDateTime()


class FeedbackQuerySchema(PageArgs):
    kind = fields.String(validate=validate.OneOf(feedback.KINDS))
    sort = sort_field(*feedback.SORTS, default=None)  # no sort: the most recently recorded first


class FeedbackPageSchema(Schema):
    items = fields.List(fields.Nested(FeedbackSchema))
    next_cursor = fields.String(allow_none=True)


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_AWARE_TIME = fields.AwareDateTime()


class DateOrTime(fields.String):
    """A date (`2026-03-31`, a whole UTC day) or a time with an offset (`2026-03-31T12:00:00Z`)."""

    default_error_messages: ClassVar[dict] = {
        "invalid_window": "Use a date (2026-03-31) or a time with an offset (2026-03-31T12:00:00Z)."}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        try:
            return date.fromisoformat(text) if _DATE.match(text) else _AWARE_TIME.deserialize(text)
        except (ValueError, ValidationError):
            raise self.make_error("invalid_window") from None

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else value.isoformat()


class FeedbackFiguresQuerySchema(Schema):
    start = DateOrTime(data_key="from", load_default=None, metadata={
        "description": "First day or instant counted (inclusive); a date is a whole UTC day."})
    end = DateOrTime(data_key="to", load_default=None, metadata={
        "description": "Last day or instant counted (inclusive); not before `from`."})
    segment = Trimmed(load_default=None, validate=validate.Length(min=1, max=SEGMENT_MAX), metadata={
        "description": "Only contacts with this tag (until saved segments ship, a segment is a tag)."})
    account_id = fields.UUID(load_default=None, metadata={"description": "Only contacts of this account."})


class NpsSchema(Schema):
    score = fields.Decimal(as_string=True, allow_none=True, metadata={
        "description": "% promoters − % detractors, -100 to 100, rounded half away from zero to 0.1; null "
                       "without answers."})
    responses = fields.Integer()
    promoters = fields.Integer(metadata={"description": "Scores 9-10."})
    passives = fields.Integer(metadata={"description": "Scores 7-8."})
    detractors = fields.Integer(metadata={"description": "Scores 0-6."})


class CsatSchema(Schema):
    average = fields.Decimal(as_string=True, allow_none=True, metadata={
        "description": "Mean score, 1-5, rounded half away from zero to 0.01; null without answers."})
    responses = fields.Integer()
    distribution = fields.Dict(keys=fields.String(), values=fields.Integer(),
                               metadata={"description": "Answers per score, `\"1\"` to `\"5\"`."})


class FeedbackFiguresSchema(Schema):
    start = DateOrTime(data_key="from", allow_none=True, metadata={"description": "The window, as asked."})
    end = DateOrTime(data_key="to", allow_none=True)
    segment = fields.String(allow_none=True)
    account_id = fields.UUID(allow_none=True)
    nps = fields.Nested(NpsSchema)
    csat = fields.Nested(CsatSchema)


@blp.route("/<uuid:contact_id>/feedback")
class ContactFeedback(MethodView):
    @requires("contacts:read")
    @blp.arguments(FeedbackQuerySchema, location="query")
    @blp.response(200, FeedbackPageSchema)
    @blp.alt_response(404, description="No contact has this id.")
    def get(self, args, contact_id):
        """A contact's survey answers, the most recently recorded first."""
        return feedback.list_feedback(read_uow(), contact_id, **args)

    @requires("contacts:write")
    @idempotent(IdempotencyRecord)
    @blp.arguments(FeedbackInSchema)
    @blp.response(201, FeedbackSchema)
    @blp.alt_response(404, description="No contact has this id.")
    @blp.doc(parameters=[HEADER_PARAMETER])
    def post(self, answer, contact_id):
        """Record an NPS or CSAT answer; a CSAT answer rates one interaction or purchase of this contact."""
        recorded = feedback.record_feedback(uow(), contact_id, answer, recorded_by=current_principal().key_id)
        return record_or_receipt(READ_SCOPE, recorded, id=recorded.id), 201


@analytics_blp.route("/feedback")
class FeedbackFigures(MethodView):
    @requires("contacts:read")
    @analytics_blp.arguments(FeedbackFiguresQuerySchema, location="query")
    @analytics_blp.response(200, FeedbackFiguresSchema)
    def get(self, args):
        """NPS and CSAT over the answers given in a window, optionally for one segment (tag) or account."""
        return feedback.feedback_figures(read_uow(), **args)
