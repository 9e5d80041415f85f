"""HTTP entrypoints of a contact's fraud flags: parse, call one use case in fraud_flags.py, serialise."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, fields, validate

from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import current_principal, record_or_receipt, requires
from services.common.pagination import PageArgs, sort_field
from services.common.schemas import SLUG, Trimmed
from services.common.web import read_uow, uow

from . import fraud_flags
from .models import FRAUD_CODE_MAX, FRAUD_REASON_MAX, IdempotencyRecord

blp = Blueprint("fraud_flags", __name__, url_prefix="/api/v1/contacts",
                description="Fraud flags on a contact, active until cleared (evidence for termination policies).")


def _reason(**kw) -> Trimmed:
    return Trimmed(required=True, validate=validate.Length(min=1, max=FRAUD_REASON_MAX), **kw)


class FraudFlagCreateSchema(Schema):
    class Meta:
        unknown = RAISE  # a misspelt field is an error the caller must see, not silently dropped data

    code = fields.String(required=True, validate=[SLUG, validate.Length(max=FRAUD_CODE_MAX)], metadata={
        "description": "What is suspected, as a slug, e.g. `chargeback`, `stolen_card`, `identity_mismatch`."})
    reason = _reason(metadata={"description": "Why: what was seen, for the operator who decides."})


class FraudFlagClearSchema(Schema):
    class Meta:
        unknown = RAISE

    reason = _reason(metadata={"description": "Why the flag no longer holds."})


class FraudFlagQuerySchema(PageArgs):
    active = fields.Boolean(metadata={"description": "true: only flags not cleared; false: only cleared ones."})
    sort = sort_field(*fraud_flags.SORTS, default=None)  # no sort: newest first


class FraudFlagSchema(Schema):
    id = fields.UUID()
    contact_id = fields.UUID()
    code = fields.String()
    reason = fields.String()
    active = fields.Boolean(metadata={"description": "Not cleared: the flag counts as evidence."})
    flagged_by = fields.String(metadata={"description": "The API key that recorded it."})
    flagged_at = fields.AwareDateTime()
    cleared_at = fields.AwareDateTime(allow_none=True)
    cleared_by = fields.String(allow_none=True, metadata={"description": "The API key that cleared it."})
    clear_reason = fields.String(allow_none=True)


class FraudFlagPageSchema(Schema):
    items = fields.List(fields.Nested(FraudFlagSchema))
    next_cursor = fields.String(allow_none=True)


def _shown(flag):
    """The flag, or for a key without `contacts:read` only its id (docs/api-contacts.md)."""
    return record_or_receipt(fraud_flags.READ_SCOPE, flag, id=flag.id)


@blp.route("/<uuid:contact_id>/fraud-flags")
class FraudFlags(MethodView):
    @requires("contacts:read")
    @blp.arguments(FraudFlagQuerySchema, location="query")
    @blp.response(200, FraudFlagPageSchema)
    @blp.alt_response(404, description="No contact has this id.")
    def get(self, args, contact_id):
        """A contact's fraud flags, newest first by default; `active` filters."""
        return fraud_flags.list_flags(read_uow(), contact_id, **args)

    @requires("contacts:write")
    @idempotent(IdempotencyRecord)
    @blp.arguments(FraudFlagCreateSchema)
    @blp.response(201, FraudFlagSchema)
    @blp.alt_response(404, description="No contact has this id.")
    @blp.doc(parameters=[HEADER_PARAMETER])
    def post(self, data, contact_id):
        """Flag a contact for suspected fraud; active until cleared. Without `contacts:read`: the id only."""
        flag = fraud_flags.flag_contact(uow(), contact_id, data, flagged_by=current_principal().key_id)
        return _shown(flag), 201, {"Location": f"{blp.url_prefix}/{contact_id}/fraud-flags/{flag.id}"}


@blp.route("/<uuid:contact_id>/fraud-flags/<uuid:flag_id>")
class FraudFlagById(MethodView):
    @requires("contacts:read")
    @blp.response(200, FraudFlagSchema)
    @blp.alt_response(404, description="No contact has this id, or it has no such flag.")
    def get(self, contact_id, flag_id):
        """One fraud flag of a contact."""
        return fraud_flags.get_flag(read_uow(), contact_id, flag_id)


@blp.route("/<uuid:contact_id>/fraud-flags/<uuid:flag_id>/clear")
class ClearFraudFlag(MethodView):
    @requires("contacts:write")
    @blp.arguments(FraudFlagClearSchema)
    @blp.response(200, FraudFlagSchema)
    @blp.alt_response(404, description="No contact has this id, or it has no such flag.")
    @blp.alt_response(409, description="The flag was already cleared.")
    def post(self, data, contact_id, flag_id):
        """Clear an active fraud flag with a reason; it stops counting as evidence."""
        flag = fraud_flags.clear_flag(uow(), contact_id, flag_id, reason=data["reason"],
                                      cleared_by=current_principal().key_id)
        return _shown(flag)
