"""HTTP entrypoints for a contact's consent: record changes, read the history (rules in consent.py)."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, fields, validate

from services.common.catalog import CONSENT_CHANNELS, CONSENT_PURPOSES
from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import current_principal, record_or_receipt, requires
from services.common.pagination import PageArgs, sort_field
from services.common.schemas import Moment, Trimmed
from services.common.web import read_uow, uow

from . import consent
from .models import CONSENT_SOURCE_MAX, CONSENT_TEXT_VERSION_MAX, IdempotencyRecord
from .service import READ_SCOPE

# Every channel for both purposes, twice over, is still one body; more is not one person's form.
MAX_CHANGES = 20

blp = Blueprint("consents", __name__, url_prefix="/api/v1/contacts",
                description="Consent per channel and purpose: the history of every change and the current state.")


class ConsentChangeInSchema(Schema):
    class Meta:
        unknown = RAISE

    channel = fields.String(required=True, validate=validate.OneOf(CONSENT_CHANNELS))
    purpose = fields.String(required=True, validate=validate.OneOf(CONSENT_PURPOSES))
    status = fields.String(required=True, validate=validate.OneOf(consent.STATUSES))
    source = Trimmed(required=True, validate=validate.Length(min=1, max=CONSENT_SOURCE_MAX),
                     metadata={"description": "Where the statement was taken, e.g. `web-form`, `call-center`."})
    occurred_at = Moment(load_default=None, metadata={
        "description": "When the person said it (with an offset); default now; at most 5 minutes ahead."})
    text_version = Trimmed(load_default=None, allow_none=True,
                           validate=validate.Length(min=1, max=CONSENT_TEXT_VERSION_MAX),
                           metadata={"description": "The version of the consent text agreed to; required to grant."})


class ConsentChangesSchema(Schema):
    class Meta:
        unknown = RAISE

    changes = fields.List(fields.Nested(ConsentChangeInSchema), required=True,
                          validate=validate.Length(min=1, max=MAX_CHANGES),
                          metadata={"description": "Recorded all together or not at all."})


class ConsentChangeSchema(Schema):
    id = fields.UUID()
    contact_id = fields.UUID()
    channel = fields.String()
    purpose = fields.String()
    status = fields.String()
    occurred_at = fields.AwareDateTime()
    source = fields.String()
    text_version = fields.String(allow_none=True)
    current = fields.Boolean(metadata={
        "description": "Whether it became the current state when recorded (false: a newer statement was there)."})
    recorded_by = fields.String(metadata={"description": "The API key that recorded it."})
    recorded_at = fields.AwareDateTime()


class ConsentsRecordedSchema(Schema):
    contact_id = fields.UUID()
    version = fields.Integer(metadata={"description": "The contact's version; it changes only with its consents."})
    consents = fields.Dict(keys=fields.String(), metadata={
        "description": "The contact's current consent per `channel:purpose`, as `GET /api/v1/contacts/{id}` shows."})
    changes = fields.List(fields.Nested(ConsentChangeSchema))


class ConsentQuerySchema(PageArgs):
    channel = fields.String(validate=validate.OneOf(CONSENT_CHANNELS))
    purpose = fields.String(validate=validate.OneOf(CONSENT_PURPOSES))
    sort = sort_field(*consent.SORTS, default=None)  # no sort: the most recently recorded first


class ConsentPageSchema(Schema):
    items = fields.List(fields.Nested(ConsentChangeSchema))
    next_cursor = fields.String(allow_none=True)


@blp.route("/<uuid:contact_id>/consents")
class Consents(MethodView):
    @requires("contacts:read")
    @blp.arguments(ConsentQuerySchema, location="query")
    @blp.response(200, ConsentPageSchema)
    @blp.alt_response(404, description="No contact has this id.")
    def get(self, args, contact_id):
        """A contact's consent history, the most recently recorded first."""
        return consent.list_consent_changes(read_uow(), contact_id, **args)

    @requires("contacts:write")
    @idempotent(IdempotencyRecord)
    @blp.arguments(ConsentChangesSchema)
    @blp.response(201, ConsentsRecordedSchema)
    @blp.alt_response(404, description="No contact has this id.")
    @blp.doc(parameters=[HEADER_PARAMETER])
    def post(self, data, contact_id):
        """Record consent changes, all or none; the newest statement per channel and purpose is current."""
        recorded = consent.record_consent_changes(uow(), contact_id, data["changes"],
                                                  recorded_by=current_principal().key_id)
        # A key without `contacts:read` learns what it wrote, not the person's other consents.
        return record_or_receipt(READ_SCOPE, recorded, contact_id=recorded["contact_id"], version=recorded["version"],
                                 changes=[{"id": row.id} for row in recorded["changes"]]), 201
