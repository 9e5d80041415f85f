"""HTTP entrypoints of negotiation: proposals on a contract, for internal keys and in the partner portal.

The internal routes sit on `api.contracts_blp` (/api/v1/contracts/{id}/proposals), the partner's on
`api.portal_blp`, so the portal's access check (portal_access.py) runs before them. The rules, including who may
decide, are in proposals.py; a view builds the calling `Party` and calls one use case.
"""
from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from services.common.etags import Precondition, etag
from services.common.idempotency import idempotent
from services.common.identity import current_principal, record_or_receipt, requires
from services.common.pagination import PageArgs
from services.common.schemas import TrimmedInput
from services.common.web import read_uow, uow

from . import proposals, service
from .api import _ETAG_HEADER, _IDEMPOTENT, _IF_MATCH, _caller_partner_id, contracts_blp, portal_blp
from .models import IdempotencyRecord
from .schemas import TermsChangeSchema

MESSAGE_MAX = 2000


# -- schemas -----------------------------------------------------------------------------------------------

class ProposalCreateSchema(TrimmedInput):
    changes = fields.Nested(TermsChangeSchema, required=True, metadata={
        "description": "The terms to change, as for `POST /contracts/{id}/terms`; the others stay as in force."})
    message = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1, max=MESSAGE_MAX))
    expires_at = fields.AwareDateTime(allow_none=True, load_default=None,
                                      metadata={"description": "When the offer lapses; in the future."})
    expires_in_days = fields.Integer(strict=True, allow_none=True, load_default=None,
                                     validate=validate.Range(min=1, max=365),
                                     metadata={"description": "Or: lapses this many days from now "
                                                              "(default CRM_PARTNERS_PROPOSAL_DAYS, 14)."})


class ProposalRejectSchema(TrimmedInput):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=MESSAGE_MAX))


class PortalProposalSchema(Schema):
    id = fields.UUID()
    contract_id = fields.UUID()
    partner_id = fields.UUID()
    base_version = fields.Integer(metadata={"description": "The terms version the changes were made against."})
    changes = fields.Dict(keys=fields.String(), metadata={"description": "Term -> proposed value."})
    message = fields.String(allow_none=True)
    expires_at = fields.AwareDateTime()
    status = fields.Function(lambda shown: _status(shown), metadata={
        "description": "open, accepted, rejected, countered or expired (an open one past expires_at reads expired)."})
    proposed_by = fields.String(metadata={"description": "internal or partner."})
    supersedes_id = fields.UUID(allow_none=True, metadata={"description": "The proposal this one counters."})
    reason = fields.String(allow_none=True, metadata={"description": "Why it was rejected."})
    terms_version = fields.Integer(allow_none=True, metadata={"description": "The version accepting it made."})
    decided_at = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class ProposalSchema(PortalProposalSchema):
    proposed_by_key = fields.String(allow_none=True, metadata={"description": "The API key that proposed it."})
    decided_by_key = fields.String(allow_none=True)


class ProposalPageSchema(Schema):
    items = fields.List(fields.Nested(ProposalSchema), metadata={"description": "Newest first."})
    next_cursor = fields.String(allow_none=True)


class PortalProposalPageSchema(Schema):
    items = fields.List(fields.Nested(PortalProposalSchema), metadata={"description": "Newest first."})
    next_cursor = fields.String(allow_none=True)


# -- helpers -----------------------------------------------------------------------------------------------

def _status(shown) -> str:
    # A receipt (a key without partners:read) already carries the status it may see.
    return shown["status"] if isinstance(shown, dict) else proposals.shown_status(shown)


def _internal() -> proposals.Party:
    principal = current_principal()
    return proposals.Party(proposals.INTERNAL, principal.key_id,
                           may_approve=principal.has_scope(proposals.APPROVE_SCOPE))


def _partner() -> proposals.Party:
    return proposals.Party(proposals.PARTNER, current_principal().key_id, partner_id=_caller_partner_id())


def _default_days() -> int:
    return current_app.extensions["crm.settings"].partners_proposal_days


def _limits():
    return proposals.approval_limits_from_settings(current_app.extensions["crm.settings"])


def _shown(proposal):
    """The proposal, or for a key without `partners:read` only its id and status."""
    return record_or_receipt(service.READ_SCOPE, proposal, id=proposal.id, status=proposals.shown_status(proposal))


def _location(prefix: str, proposal) -> dict[str, str]:
    return {"Location": f"{prefix}/contracts/{proposal.contract_id}/proposals/{proposal.id}"}


_INTERNAL_PREFIX = "/api/v1"
_PORTAL_PREFIX = portal_blp.url_prefix


# -- /api/v1/contracts/{id}/proposals ----------------------------------------------------------------------

@contracts_blp.route("/<uuid:contract_id>/proposals")
class ContractProposals(MethodView):
    @requires("partners:read")
    @contracts_blp.arguments(PageArgs, location="query")
    @contracts_blp.response(200, ProposalPageSchema)
    @contracts_blp.alt_response(404, description="No contract has this id.")
    def get(self, args, contract_id):
        """The contract's negotiation thread: its proposals, newest first, in cursor pages."""
        return proposals.list_proposals(read_uow(), contract_id, party=_internal(), **args)

    @requires("partners:write")
    @idempotent(IdempotencyRecord)
    @contracts_blp.arguments(ProposalCreateSchema)
    @contracts_blp.response(201, ProposalSchema)
    @contracts_blp.alt_response(404, description="No contract has this id.")
    @contracts_blp.alt_response(409, description="The contract has an open proposal (`open_proposal_id`), or the "
                                                 "partner is terminated.")
    @contracts_blp.doc(**_IDEMPOTENT)
    def post(self, data, contract_id):
        """Propose changes to the terms in force to the partner."""
        proposal = proposals.submit_proposal(uow(), contract_id, data, party=_internal(), approval_limits=_limits(),
                                             default_days=_default_days())
        return _shown(proposal), 201, _location(_INTERNAL_PREFIX, proposal)


@contracts_blp.route("/<uuid:contract_id>/proposals/<uuid:proposal_id>")
class ContractProposalById(MethodView):
    @requires("partners:read")
    @contracts_blp.response(200, ProposalSchema)
    @contracts_blp.alt_response(404, description="No such contract, or it has no such proposal.")
    def get(self, contract_id, proposal_id):
        """One proposal of the contract."""
        return proposals.get_proposal(read_uow(), contract_id, proposal_id, party=_internal())


@contracts_blp.route("/<uuid:contract_id>/proposals/<uuid:proposal_id>/accept")
class ContractProposalAccept(MethodView):
    @requires("partners:write")
    @contracts_blp.response(200, ProposalSchema, headers=_ETAG_HEADER)
    @contracts_blp.alt_response(403, description="The internal side proposed it, or the change is above the "
                                                 "approval limits and the key lacks `partners:approve`.")
    @contracts_blp.alt_response(404, description="No such contract, or it has no such proposal.")
    @contracts_blp.alt_response(409, description="The proposal is not open, or was made against an older terms "
                                                 "version (`current_version`).")
    @contracts_blp.alt_response(412, description="If-Match names a version that is no longer in force.")
    @contracts_blp.alt_response(428, description="If-Match is missing.")
    @contracts_blp.doc(parameters=[_IF_MATCH])
    def post(self, contract_id, proposal_id):
        """Accept the partner's proposal: its changes become the next terms version."""
        proposal, detail = proposals.accept_proposal(
            uow(), contract_id, proposal_id, party=_internal(), precondition=Precondition.from_request(),
            approval_limits=_limits())
        return _shown(proposal), 200, {"ETag": etag(detail["current_version"])}


@contracts_blp.route("/<uuid:contract_id>/proposals/<uuid:proposal_id>/reject")
class ContractProposalReject(MethodView):
    @requires("partners:write")
    @contracts_blp.arguments(ProposalRejectSchema)
    @contracts_blp.response(200, ProposalSchema)
    @contracts_blp.alt_response(403, description="The internal side proposed it.")
    @contracts_blp.alt_response(404, description="No such contract, or it has no such proposal.")
    @contracts_blp.alt_response(409, description="The proposal is not open.")
    def post(self, data, contract_id, proposal_id):
        """Reject the partner's proposal, with a reason."""
        return _shown(proposals.reject_proposal(uow(), contract_id, proposal_id, reason=data["reason"],
                                                party=_internal()))


@contracts_blp.route("/<uuid:contract_id>/proposals/<uuid:proposal_id>/counter")
class ContractProposalCounter(MethodView):
    @requires("partners:write")
    @idempotent(IdempotencyRecord)
    @contracts_blp.arguments(ProposalCreateSchema)
    @contracts_blp.response(201, ProposalSchema)
    @contracts_blp.alt_response(403, description="The internal side proposed it.")
    @contracts_blp.alt_response(404, description="No such contract, or it has no such proposal.")
    @contracts_blp.alt_response(409, description="The proposal is not open, or the partner is terminated.")
    @contracts_blp.doc(**_IDEMPOTENT)
    def post(self, data, contract_id, proposal_id):
        """Answer the partner's proposal with a new one; the old one becomes countered."""
        proposal = proposals.counter_proposal(uow(), contract_id, proposal_id, data, party=_internal(),
                                              approval_limits=_limits(),
                                              default_days=_default_days())
        return _shown(proposal), 201, _location(_INTERNAL_PREFIX, proposal)


# -- /api/v1/partner-portal/contracts/{id}/proposals -------------------------------------------------------

@portal_blp.route("/contracts/<uuid:contract_id>/proposals")
class PortalProposals(MethodView):
    @requires(kind="partner")
    @portal_blp.arguments(PageArgs, location="query")
    @portal_blp.response(200, PortalProposalPageSchema)
    @portal_blp.alt_response(404, description="The calling partner has no contract with this id.")
    def get(self, args, contract_id):
        """The negotiation thread of one of the calling partner's contracts, newest first, in cursor pages."""
        return proposals.list_proposals(read_uow(), contract_id, party=_partner(), **args)

    @requires(kind="partner")
    @idempotent(IdempotencyRecord)
    @portal_blp.arguments(ProposalCreateSchema)
    @portal_blp.response(201, PortalProposalSchema)
    @portal_blp.alt_response(404, description="The calling partner has no contract with this id.")
    @portal_blp.alt_response(409, description="The contract has an open proposal (`open_proposal_id`).")
    @portal_blp.doc(**_IDEMPOTENT)
    def post(self, data, contract_id):
        """Propose changes to the terms in force of one of the calling partner's contracts."""
        proposal = proposals.submit_proposal(uow(), contract_id, data, party=_partner(),
                                             default_days=_default_days())
        return proposal, 201, _location(_PORTAL_PREFIX, proposal)


@portal_blp.route("/contracts/<uuid:contract_id>/proposals/<uuid:proposal_id>")
class PortalProposalById(MethodView):
    @requires(kind="partner")
    @portal_blp.response(200, PortalProposalSchema)
    @portal_blp.alt_response(404, description="The calling partner has no such contract or proposal.")
    def get(self, contract_id, proposal_id):
        """One proposal of one of the calling partner's contracts."""
        return proposals.get_proposal(read_uow(), contract_id, proposal_id, party=_partner())


@portal_blp.route("/contracts/<uuid:contract_id>/proposals/<uuid:proposal_id>/accept")
class PortalProposalAccept(MethodView):
    @requires(kind="partner")
    @portal_blp.response(200, PortalProposalSchema, headers=_ETAG_HEADER)
    @portal_blp.alt_response(403, description="The partner proposed it.")
    @portal_blp.alt_response(404, description="The calling partner has no such contract or proposal.")
    @portal_blp.alt_response(409, description="The proposal is not open, or was made against an older terms "
                                              "version (`current_version`).")
    @portal_blp.alt_response(412, description="If-Match names a version that is no longer in force.")
    @portal_blp.alt_response(428, description="If-Match is missing.")
    @portal_blp.doc(parameters=[_IF_MATCH])
    def post(self, contract_id, proposal_id):
        """Accept the internal side's proposal: its changes become the next terms version."""
        proposal, detail = proposals.accept_proposal(
            uow(), contract_id, proposal_id, party=_partner(), precondition=Precondition.from_request(),
            approval_limits=_limits())
        return proposal, 200, {"ETag": etag(detail["current_version"])}


@portal_blp.route("/contracts/<uuid:contract_id>/proposals/<uuid:proposal_id>/reject")
class PortalProposalReject(MethodView):
    @requires(kind="partner")
    @portal_blp.arguments(ProposalRejectSchema)
    @portal_blp.response(200, PortalProposalSchema)
    @portal_blp.alt_response(403, description="The partner proposed it.")
    @portal_blp.alt_response(404, description="The calling partner has no such contract or proposal.")
    @portal_blp.alt_response(409, description="The proposal is not open.")
    def post(self, data, contract_id, proposal_id):
        """Reject the internal side's proposal, with a reason."""
        return proposals.reject_proposal(uow(), contract_id, proposal_id, reason=data["reason"], party=_partner())


@portal_blp.route("/contracts/<uuid:contract_id>/proposals/<uuid:proposal_id>/counter")
class PortalProposalCounter(MethodView):
    @requires(kind="partner")
    @idempotent(IdempotencyRecord)
    @portal_blp.arguments(ProposalCreateSchema)
    @portal_blp.response(201, PortalProposalSchema)
    @portal_blp.alt_response(403, description="The partner proposed it.")
    @portal_blp.alt_response(404, description="The calling partner has no such contract or proposal.")
    @portal_blp.alt_response(409, description="The proposal is not open.")
    @portal_blp.doc(**_IDEMPOTENT)
    def post(self, data, contract_id, proposal_id):
        """Answer the internal side's proposal with a new one; the old one becomes countered."""
        proposal = proposals.counter_proposal(uow(), contract_id, proposal_id, data, party=_partner(),
                                              default_days=_default_days())
        return proposal, 201, _location(_PORTAL_PREFIX, proposal)
