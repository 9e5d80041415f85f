"""HTTP entrypoints for disputes: internal routes under a partner, portal routes for the partner itself.

The rules are in disputes.py. The internal routes sit on the partners blueprint, the portal routes on the
portal blueprint, so the portal's access check (portal_access.py) runs before each of them. A portal caller's
partner id comes only from its identity token; the portal shows no API key of either side.
"""
from __future__ import annotations

from decimal import Decimal

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from services.common.etags import Precondition, etag
from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import current_principal, record_or_receipt, requires
from services.common.pagination import PageArgs, sort_field
from services.common.schemas import CURRENCY, ExactDecimal, Trimmed, TrimmedInput
from services.common.web import read_uow, runtime, uow

from . import disputes
from .api import _caller_partner_id, partners_blp, portal_blp
from .models import (
    DISPUTE_CATEGORIES,
    DISPUTE_RESOLUTIONS,
    DISPUTE_SORTS,
    DISPUTE_STATUSES,
    IdempotencyRecord,
)
from .service import READ_SCOPE

MESSAGE_MAX = 5000
REFERENCE_MAX = 100
_MAX_AMOUNT = Decimal("9999999999999.99")  # fits NUMERIC(15, 2)

_ETAG_HEADER = {"ETag": {"description": 'The dispute\'s version as a weak tag, `W/"<version>"`; send it back in '
                                        "If-Match to move the dispute.", "schema": {"type": "string"}}}
_IF_MATCH = {"name": "If-Match", "in": "header", "required": True, "schema": {"type": "string"},
             "description": 'The ETag of the dispute, `W/"<version>"`: missing is 428, stale is 412.'}
_IF_MATCH_OPTIONAL = {**_IF_MATCH, "required": False,
                      "description": 'The ETag of the dispute, `W/"<version>"`: stale is 412; may be left out.'}


# -- schemas ------------------------------------------------------------------------------------------------

class DisputeOpenSchema(TrimmedInput):
    category = fields.String(required=True, validate=validate.OneOf(DISPUTE_CATEGORIES))
    # A decimal string: a JSON number may already be a binary float by the time it is parsed.
    amount = ExactDecimal(2, _MAX_AMOUNT, strings_only=True, required=True, error_messages={
        "not_string": 'Send the amount as a decimal string, e.g. "1250.50".'}, metadata={
        "description": "The amount in dispute, in `currency`, as a decimal string with at most 2 decimal places."})
    currency = fields.String(required=True, validate=CURRENCY)
    contract_id = fields.UUID(load_default=None, allow_none=True,
                              metadata={"description": "A contract of this partner the dispute is about."})
    delivery_id = fields.UUID(load_default=None, allow_none=True,
                              metadata={"description": "A delivery of this partner the dispute is about."})
    invoice_reference = Trimmed(load_default=None, allow_none=True,
                                validate=validate.Length(min=1, max=REFERENCE_MAX),
                                metadata={"description": "The invoice the dispute is about. At least one of "
                                                         "contract_id, delivery_id, invoice_reference."})
    message = Trimmed(required=True, validate=validate.Length(min=1, max=MESSAGE_MAX),
                      metadata={"description": "The first message of the thread: what is wrong."})


class DisputeMoveSchema(TrimmedInput):
    status = fields.String(required=True, validate=validate.OneOf(DISPUTE_STATUSES))
    resolution = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(DISPUTE_RESOLUTIONS),
                               metadata={"description": "Required with `resolved`, refused otherwise."})


class MessageInSchema(TrimmedInput):
    body = Trimmed(required=True, validate=validate.Length(min=1, max=MESSAGE_MAX))


class PortalDisputeSchema(Schema):
    id = fields.UUID()
    partner_id = fields.UUID()
    contract_id = fields.UUID(allow_none=True)
    delivery_id = fields.UUID(allow_none=True)
    invoice_reference = fields.String(allow_none=True)
    category = fields.String()
    amount = fields.Decimal(as_string=True)
    currency = fields.String()
    status = fields.String()
    resolution = fields.String(allow_none=True)
    opened_by = fields.String(metadata={"description": "`internal` or `partner`."})
    opened_at = fields.AwareDateTime()
    resolved_at = fields.AwareDateTime(allow_none=True)
    overdue = fields.Boolean(metadata={"description": "Unresolved for longer than the SLA "
                                                      "(CRM_PARTNERS_DISPUTE_SLA_HOURS)."})
    overdue_at = fields.AwareDateTime(allow_none=True, metadata={
        "description": "When crm.dispute.overdue was published; null before (the worker checks every minute)."})
    updated_at = fields.AwareDateTime()
    version = fields.Integer()


class DisputeSchema(PortalDisputeSchema):
    opened_by_key = fields.String(allow_none=True, metadata={"description": "The API key that opened it."})


class DisputeQuerySchema(PageArgs):
    status = fields.String(validate=validate.OneOf(DISPUTE_STATUSES))
    overdue = fields.Boolean(metadata={"description": "true: only overdue disputes; false: only the others."})
    sort = sort_field(*DISPUTE_SORTS, default=None)  # no sort: the most recently opened first


class DisputePageSchema(Schema):
    items = fields.List(fields.Nested(DisputeSchema))
    next_cursor = fields.String(allow_none=True)


class PortalDisputePageSchema(Schema):
    items = fields.List(fields.Nested(PortalDisputeSchema))
    next_cursor = fields.String(allow_none=True)


class PortalMessageSchema(Schema):
    id = fields.UUID()
    dispute_id = fields.UUID()
    side = fields.String(metadata={"description": "`internal` or `partner`: who wrote it."})
    body = fields.String()
    created_at = fields.AwareDateTime()


class MessageSchema(PortalMessageSchema):
    author_key = fields.String(allow_none=True, metadata={"description": "The API key that wrote it."})


class MessagePageSchema(Schema):
    items = fields.List(fields.Nested(MessageSchema), metadata={"description": "Oldest first."})
    next_cursor = fields.String(allow_none=True)


class PortalMessagePageSchema(Schema):
    items = fields.List(fields.Nested(PortalMessageSchema), metadata={"description": "Oldest first."})
    next_cursor = fields.String(allow_none=True)


# -- helpers ------------------------------------------------------------------------------------------------

def _sla() -> float:
    return runtime().settings.partners_dispute_sla_hours


def _actor() -> str:
    return current_principal().key_id


def _headers(detail: dict) -> dict[str, str]:
    return {"ETag": etag(detail["version"])}


def _shown(detail: dict):
    """The dispute, or for a key without `partners:read` only its id and version."""
    return record_or_receipt(READ_SCOPE, detail, id=detail["id"], version=detail["version"])


# -- /api/v1/partners/{partner_id}/disputes -----------------------------------------------------------------

@partners_blp.route("/<uuid:partner_id>/disputes")
class PartnerDisputes(MethodView):
    @requires("partners:read")
    @partners_blp.arguments(DisputeQuerySchema, location="query")
    @partners_blp.response(200, DisputePageSchema)
    @partners_blp.alt_response(404, description="No partner has this id.")
    def get(self, args, partner_id):
        """A partner's disputes, the most recently opened first or by `sort`, by status or overdue."""
        return disputes.list_disputes(read_uow(), partner_id, sla_hours=_sla(), **args)

    @requires("partners:write")
    @idempotent(IdempotencyRecord)
    @partners_blp.arguments(DisputeOpenSchema)
    @partners_blp.response(201, DisputeSchema, headers=_ETAG_HEADER)
    @partners_blp.alt_response(404, description="No partner has this id.")
    @partners_blp.doc(parameters=[HEADER_PARAMETER])
    def post(self, data, partner_id):
        """Open a dispute with the partner about a contract, delivery or invoice, with its first message."""
        detail = disputes.open_dispute(uow(), partner_id, data, side=disputes.INTERNAL, actor=_actor(),
                                       sla_hours=_sla())
        location = f"{partners_blp.url_prefix}/{partner_id}/disputes/{detail['id']}"
        return _shown(detail), 201, {**_headers(detail), "Location": location}


@partners_blp.route("/<uuid:partner_id>/disputes/<uuid:dispute_id>")
class PartnerDisputeById(MethodView):
    @requires("partners:read")
    @partners_blp.response(200, DisputeSchema, headers=_ETAG_HEADER)
    @partners_blp.alt_response(404, description="The partner has no dispute with this id.")
    def get(self, partner_id, dispute_id):
        """One dispute of the partner; the ETag names its version."""
        detail = disputes.get_dispute(read_uow(), partner_id, dispute_id, sla_hours=_sla())
        return detail, 200, _headers(detail)

    @requires("partners:write")
    @partners_blp.arguments(DisputeMoveSchema)
    @partners_blp.response(200, DisputeSchema, headers=_ETAG_HEADER)
    @partners_blp.alt_response(404, description="The partner has no dispute with this id.")
    @partners_blp.alt_response(409, description="The move is not allowed from the current status (named).")
    @partners_blp.alt_response(412, description="If-Match names a version that is no longer current.")
    @partners_blp.alt_response(428, description="If-Match is missing.")
    @partners_blp.doc(parameters=[_IF_MATCH])
    def patch(self, move, partner_id, dispute_id):
        """Move the dispute: open → investigating → resolved (with a resolution) or escalated → resolved."""
        detail = disputes.move_dispute(uow(), partner_id, dispute_id, **move, side=disputes.INTERNAL,
                                       precondition=Precondition.from_request(), sla_hours=_sla())
        return _shown(detail), 200, _headers(detail)


@partners_blp.route("/<uuid:partner_id>/disputes/<uuid:dispute_id>/messages")
class PartnerDisputeMessages(MethodView):
    @requires("partners:read")
    @partners_blp.arguments(PageArgs, location="query")
    @partners_blp.response(200, MessagePageSchema)
    @partners_blp.alt_response(404, description="The partner has no dispute with this id.")
    def get(self, args, partner_id, dispute_id):
        """The dispute's thread, oldest first, from both sides."""
        return disputes.list_messages(read_uow(), partner_id, dispute_id, **args)

    @requires("partners:write")
    @partners_blp.arguments(MessageInSchema)
    @partners_blp.response(201, MessageSchema)
    @partners_blp.alt_response(404, description="The partner has no dispute with this id.")
    @partners_blp.alt_response(409, description="The dispute is resolved; its thread is closed.")
    def post(self, data, partner_id, dispute_id):
        """Write to the partner in the dispute's thread."""
        message = disputes.post_message(uow(), partner_id, dispute_id, data["body"], side=disputes.INTERNAL,
                                        actor=_actor())
        return record_or_receipt(READ_SCOPE, message, id=message.id), 201


# -- /api/v1/partner-portal/disputes ------------------------------------------------------------------------

@portal_blp.route("/disputes")
class PortalDisputes(MethodView):
    @requires(kind="partner")
    @portal_blp.arguments(DisputeQuerySchema, location="query")
    @portal_blp.response(200, PortalDisputePageSchema)
    def get(self, args):
        """The calling partner's disputes, the most recently opened first or by `sort`, by status or overdue."""
        return disputes.list_disputes(read_uow(), _caller_partner_id(), sla_hours=_sla(), **args)

    @requires(kind="partner")
    @portal_blp.arguments(DisputeOpenSchema)
    @portal_blp.response(201, PortalDisputeSchema, headers=_ETAG_HEADER)
    @portal_blp.alt_response(422, description="Invalid, or names a contract or delivery that is not the caller's.")
    def post(self, data):
        """Open a dispute about one of the calling partner's contracts or deliveries, or an invoice."""
        detail = disputes.open_dispute(uow(), _caller_partner_id(), data, side=disputes.PARTNER, actor=_actor(),
                                       sla_hours=_sla())
        return detail, 201, {**_headers(detail), "Location": f"{portal_blp.url_prefix}/disputes/{detail['id']}"}


@portal_blp.route("/disputes/<uuid:dispute_id>")
class PortalDisputeById(MethodView):
    @requires(kind="partner")
    @portal_blp.response(200, PortalDisputeSchema, headers=_ETAG_HEADER)
    @portal_blp.alt_response(404, description="The calling partner has no dispute with this id.")
    def get(self, dispute_id):
        """One of the calling partner's disputes."""
        detail = disputes.get_dispute(read_uow(), _caller_partner_id(), dispute_id, sla_hours=_sla())
        return detail, 200, _headers(detail)


@portal_blp.route("/disputes/<uuid:dispute_id>/escalation")
class PortalDisputeEscalation(MethodView):
    @requires(kind="partner")
    @portal_blp.response(200, PortalDisputeSchema, headers=_ETAG_HEADER)
    @portal_blp.alt_response(404, description="The calling partner has no dispute with this id.")
    @portal_blp.alt_response(409, description="The dispute cannot be escalated from its current status (named).")
    @portal_blp.alt_response(412, description="If-Match names a version that is no longer current.")
    @portal_blp.doc(parameters=[_IF_MATCH_OPTIONAL])
    def post(self, dispute_id):
        """Escalate one of the calling partner's open or investigating disputes."""
        detail = disputes.move_dispute(uow(), _caller_partner_id(), dispute_id, status=disputes.ESCALATED,
                                       side=disputes.PARTNER, precondition=Precondition.from_request(),
                                       sla_hours=_sla(), required=False)
        return detail, 200, _headers(detail)


@portal_blp.route("/disputes/<uuid:dispute_id>/messages")
class PortalDisputeMessages(MethodView):
    @requires(kind="partner")
    @portal_blp.arguments(PageArgs, location="query")
    @portal_blp.response(200, PortalMessagePageSchema)
    @portal_blp.alt_response(404, description="The calling partner has no dispute with this id.")
    def get(self, args, dispute_id):
        """The thread of one of the calling partner's disputes, oldest first."""
        return disputes.list_messages(read_uow(), _caller_partner_id(), dispute_id, **args)

    @requires(kind="partner")
    @portal_blp.arguments(MessageInSchema)
    @portal_blp.response(201, PortalMessageSchema)
    @portal_blp.alt_response(404, description="The calling partner has no dispute with this id.")
    @portal_blp.alt_response(409, description="The dispute is resolved; its thread is closed.")
    def post(self, data, dispute_id):
        """Write to us in the thread of one of the calling partner's disputes."""
        return disputes.post_message(uow(), _caller_partner_id(), dispute_id, data["body"], side=disputes.PARTNER,
                                     actor=_actor()), 201
