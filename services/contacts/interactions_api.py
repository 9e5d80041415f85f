"""HTTP entrypoints of a contact's interactions: parse, call one use case in interactions.py, serialise."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, fields, validate

from services.common.etags import Precondition, etag
from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import current_principal, record_or_receipt, requires
from services.common.pagination import PageArgs, sort_field
from services.common.schemas import Moment, Trimmed
from services.common.web import read_uow, uow

from . import interactions
from .models import (
    COMPLAINT_CATEGORIES,
    COMPLAINT_RESOLUTION_MAX,
    COMPLAINT_STATUSES,
    INTERACTION_CHANNELS,
    INTERACTION_DIRECTIONS,
    INTERACTION_OUTCOME_MAX,
    INTERACTION_SUMMARY_MAX,
    INTERACTION_TYPES,
    IdempotencyRecord,
)

blp = Blueprint("interactions", __name__, url_prefix="/api/v1/contacts",
                description="Calls, meetings, e-mails, inquiries, complaints and notes with a contact.")

_ETAG_HEADER = {"ETag": {"description": 'The interaction\'s version as a weak tag, `W/"<version>"`; send it back in '
                                        "If-Match.", "schema": {"type": "string"}}}


def _one_of(choices) -> validate.OneOf:
    return validate.OneOf(choices, error="Must be one of: {choices}.")


def _text(max_len: int, **kw) -> Trimmed:
    return Trimmed(validate=validate.Length(min=1, max=max_len), **kw)


class InteractionCreateSchema(Schema):
    class Meta:
        unknown = RAISE  # a misspelt field is an error the caller must see, not silently dropped data

    type = fields.String(required=True, validate=_one_of(INTERACTION_TYPES))
    channel = fields.String(validate=_one_of(INTERACTION_CHANNELS), allow_none=True,
                            metadata={"description": "Required except for a note."})
    direction = fields.String(validate=_one_of(INTERACTION_DIRECTIONS), allow_none=True,
                              metadata={"description": "Required except for a note."})
    occurred_at = Moment(load_default=None, metadata={
        "description": "When it happened, with a time zone; default now; at most 5 minutes ahead."})
    summary = _text(INTERACTION_SUMMARY_MAX, required=True)
    outcome = _text(INTERACTION_OUTCOME_MAX, allow_none=True)
    category = fields.String(validate=_one_of(COMPLAINT_CATEGORIES), allow_none=True,
                             metadata={"description": "Complaints only, and required for them."})


class InteractionUpdateSchema(Schema):
    class Meta:
        unknown = RAISE

    summary = _text(INTERACTION_SUMMARY_MAX)
    outcome = _text(INTERACTION_OUTCOME_MAX, allow_none=True)
    status = fields.String(validate=_one_of(COMPLAINT_STATUSES), metadata={
        "description": "Complaints only: `resolved` (with a resolution) closes an open complaint."})
    resolution = _text(COMPLAINT_RESOLUTION_MAX, metadata={"description": "Complaints only: how it was resolved."})


class InteractionQuerySchema(PageArgs):
    type = fields.List(fields.String(validate=_one_of(INTERACTION_TYPES)), metadata={
        "description": "Only these types (repeat the parameter for several)."})
    status = fields.String(validate=_one_of(COMPLAINT_STATUSES), metadata={
        "description": "Only complaints in this status."})
    sort = sort_field(*interactions.SORTS, default="-occurred_at")


class InteractionSchema(Schema):
    id = fields.UUID()
    contact_id = fields.UUID()
    type = fields.String()
    channel = fields.String(allow_none=True)
    direction = fields.String(allow_none=True)
    occurred_at = fields.AwareDateTime()
    summary = fields.String()
    outcome = fields.String(allow_none=True)
    recorded_by = fields.String(metadata={"description": "The API key that recorded it."})
    category = fields.String(allow_none=True, metadata={"description": "Complaints only."})
    status = fields.String(allow_none=True, metadata={"description": "Complaints only: `open` or `resolved`."})
    resolution = fields.String(allow_none=True)
    resolved_at = fields.AwareDateTime(allow_none=True)
    resolved_by = fields.String(allow_none=True, metadata={"description": "The API key that resolved it."})
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    version = fields.Integer()


class InteractionPageSchema(Schema):
    items = fields.List(fields.Nested(InteractionSchema))
    next_cursor = fields.String(allow_none=True)


def _headers(interaction) -> dict[str, str]:
    return {"ETag": etag(interaction.version)}


def _shown(interaction):
    """The interaction, or for a key without `contacts:read` only its id and version (docs/api-contacts.md)."""
    return record_or_receipt(interactions.READ_SCOPE, interaction, id=interaction.id, version=interaction.version)


@blp.route("/<uuid:contact_id>/interactions")
class Interactions(MethodView):
    @requires("contacts:read")
    @blp.arguments(InteractionQuerySchema, location="query")
    @blp.response(200, InteractionPageSchema)
    @blp.alt_response(404, description="No contact has this id.")
    def get(self, args, contact_id):
        """A contact's interactions, newest first by default, by type and complaint status."""
        return interactions.list_interactions(read_uow(), contact_id, **args)

    @requires("contacts:write")
    @idempotent(IdempotencyRecord)
    @blp.arguments(InteractionCreateSchema)
    @blp.response(201, InteractionSchema, headers=_ETAG_HEADER)
    @blp.alt_response(404, description="No contact has this id.")
    @blp.doc(parameters=[HEADER_PARAMETER])
    def post(self, data, contact_id):
        """Record an interaction; it joins the contact's timeline. Without `contacts:read`: only id and version."""
        interaction = interactions.record_interaction(uow(), contact_id, data, recorded_by=current_principal().key_id)
        return _shown(interaction), 201, {**_headers(interaction),
                                  "Location": f"{blp.url_prefix}/{contact_id}/interactions/{interaction.id}"}


@blp.route("/<uuid:contact_id>/interactions/<uuid:interaction_id>")
class InteractionById(MethodView):
    @requires("contacts:read")
    @blp.response(200, InteractionSchema, headers=_ETAG_HEADER)
    @blp.alt_response(404, description="No contact has this id, or it has no such interaction.")
    def get(self, contact_id, interaction_id):
        """One interaction of a contact, with its version as the ETag."""
        interaction = interactions.get_interaction(read_uow(), contact_id, interaction_id)
        return interaction, 200, _headers(interaction)

    @requires("contacts:write")
    @blp.arguments(InteractionUpdateSchema)
    @blp.response(200, InteractionSchema, headers=_ETAG_HEADER)
    @blp.alt_response(404, description="No contact has this id, or it has no such interaction.")
    @blp.alt_response(409, description="A resolved complaint cannot be reopened.")
    @blp.alt_response(412, description="If-Match named a version that is no longer current.")
    def patch(self, changes, contact_id, interaction_id):
        """Correct the summary or outcome, or resolve a complaint (If-Match refuses lost updates)."""
        interaction = interactions.update_interaction(
            uow(), contact_id, interaction_id, changes, actor=current_principal().key_id,
            precondition=Precondition.from_request())
        return _shown(interaction), 200, _headers(interaction)
