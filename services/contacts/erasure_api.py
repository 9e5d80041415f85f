"""HTTP entrypoints of erasure (GDPR art. 17): erase a person across the suite, and follow the erasure."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import current_principal, requires
from services.common.web import read_uow, uow

from . import erasure
from .erasure import ERASE_SCOPE
from .models import IdempotencyRecord

blp = Blueprint("erasures", __name__, url_prefix="/api/v1/contacts",
                description="Erase a person's personal data in every service (`contacts:erase`).")

_LOCATION = {"Location": {"description": "The erasure: `/api/v1/contacts/erasures/{id}`.", "schema": {"type": "string"}}}


class ServiceConfirmationSchema(Schema):
    service = fields.String(metadata={"description": "A service that keeps data about people."})
    confirmed_at = fields.AwareDateTime(allow_none=True, metadata={
        "description": "When the service confirmed it erased the person; null while it has not yet."})


class ErasureSchema(Schema):
    id = fields.UUID()
    contact_id = fields.UUID(metadata={"description": "The erased contact's id; it answers 410 from now on."})
    status = fields.String(metadata={"description": "`erasing` until every service has confirmed, then `completed`."})
    requested_at = fields.AwareDateTime()
    completed_at = fields.AwareDateTime(allow_none=True)
    erased = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "Rows the request erased in the contacts database, by table."})
    services = fields.List(fields.Nested(ServiceConfirmationSchema), metadata={
        "description": "Every service that must confirm (known once the contacts worker has taken the erasure up) "
                       "or has, by name."})


@blp.route("/<uuid:contact_id>/erasure")
class ContactErasure(MethodView):
    @requires(ERASE_SCOPE)
    @idempotent(IdempotencyRecord)
    @blp.response(202, ErasureSchema, headers=_LOCATION)
    @blp.alt_response(404, description="No contact has this id.")
    @blp.alt_response(410, description="The contact was merged into another one; `survivor_id` names it.")
    @blp.doc(parameters=[HEADER_PARAMETER])
    def post(self, contact_id):
        """Erase a person here and in every other service; erasing again returns the same erasure."""
        record, _created = erasure.erase_contact(uow(), contact_id, requested_by=current_principal().key_id)
        return record, 202, {"Location": f"{blp.url_prefix}/erasures/{record['id']}"}


@blp.route("/erasures/<uuid:erasure_id>")
class ErasureById(MethodView):
    @requires(ERASE_SCOPE)
    @blp.response(200, ErasureSchema)
    @blp.alt_response(404, description="No erasure has this id.")
    def get(self, erasure_id):
        """One erasure: its status, and which services have confirmed it when."""
        return erasure.get_erasure(read_uow(), erasure_id)
