"""HTTP entrypoints of the partners service: parse, call one use case, serialise.

Three blueprints: partners and contracts for internal keys (scopes partners:read / partners:write), and the
partner portal for partner keys, whose partner id comes only from the verified identity token.

`@requires` is the outermost decorator of every view, so a caller without the scope is refused (403) before
its input is parsed. Creating POSTs honour `Idempotency-Key`: `@idempotent` sits under `@requires` and above
the flask-smorest decorators (it stores the serialised response); every view takes its unit of work from
`uow()`, which under a key is the one that also stores the response, so both commit together.
"""
from __future__ import annotations

import uuid

from flask.views import MethodView
from flask_smorest import Blueprint

from services.common.etags import Precondition, etag
from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import current_principal, record_or_receipt, requires
from services.common.web import read_uow, uow

from . import service
from .models import IdempotencyRecord
from .schemas import (
    ContractCreateSchema,
    ContractPageSchema,
    ContractQuerySchema,
    ContractSchema,
    PartnerCreateSchema,
    PartnerPageSchema,
    PartnerQuerySchema,
    PartnerSchema,
    PartnerUpdateSchema,
    PortalContractPageSchema,
    PortalContractSchema,
    PortalTermsHistorySchema,
    TermsChangeSchema,
    TermsHistorySchema,
    TermsQuerySchema,
    TermsSchema,
    TermsVersionSchema,
)

partners_blp = Blueprint("partners", __name__, url_prefix="/api/v1/partners",
                         description="Suppliers, vendors, distributors and resellers, and their contracts.")
contracts_blp = Blueprint("contracts", __name__, url_prefix="/api/v1/contracts",
                          description="Contracts and their versioned terms (changes need If-Match).")
portal_blp = Blueprint("partner_portal", __name__, url_prefix="/api/v1/partner-portal",
                       description="For partner keys: the calling partner's own record, contracts and terms.")

_ETAG_HEADER = {"ETag": {"description": 'The version of the terms in force as a weak tag, `W/"<version>"`; '
                                        "send it back in If-Match to change the terms.",
                         "schema": {"type": "string"}}}
_IF_MATCH = {"name": "If-Match", "in": "header", "required": True, "schema": {"type": "string"},
             "description": 'The ETag of the contract, `W/"<terms version>"`: missing is 428, stale is 412.'}
_IDEMPOTENT = {"parameters": [HEADER_PARAMETER]}


def _contract_headers(detail: dict) -> dict[str, str]:
    return {"ETag": etag(detail["current_version"])}


def _shown_partner(partner):
    """The partner, or for a key without `partners:read` only its id (docs/api-partners.md)."""
    return record_or_receipt(service.READ_SCOPE, partner, id=partner.id)


def _shown_contract(detail: dict):
    """The contract with its terms, or for a key without `partners:read` only its id and terms version."""
    return record_or_receipt(service.READ_SCOPE, detail, id=detail["id"], current_version=detail["current_version"])


def _actor() -> str:
    return current_principal().key_id


def _caller_partner_id() -> uuid.UUID | None:
    """The partner bound to the caller's key, from the signed identity token and nowhere else."""
    try:
        return uuid.UUID(str(current_principal().partner_id))
    except (TypeError, ValueError):
        return None


# -- /api/v1/partners --------------------------------------------------------------------------------------

@partners_blp.route("")
class Partners(MethodView):
    @requires("partners:read")
    @partners_blp.arguments(PartnerQuerySchema, location="query")
    @partners_blp.response(200, PartnerPageSchema)
    def get(self, args):
        """List partners, newest first or by `sort`, filtered by type, status and a name fragment (`q`)."""
        return service.list_partners(read_uow(), **args)

    @requires("partners:write")
    @idempotent(IdempotencyRecord)
    @partners_blp.arguments(PartnerCreateSchema)
    @partners_blp.response(201, PartnerSchema)
    @partners_blp.doc(**_IDEMPOTENT)
    def post(self, data):
        """Register a partner (status prospect unless given as onboarding or active)."""
        partner = service.create_partner(uow(), data)
        return _shown_partner(partner), 201, {"Location": f"{partners_blp.url_prefix}/{partner.id}"}


@partners_blp.route("/<uuid:partner_id>")
class PartnerById(MethodView):
    @requires("partners:read")
    @partners_blp.response(200, PartnerSchema)
    @partners_blp.alt_response(404, description="No partner has this id.")
    def get(self, partner_id):
        """One partner."""
        return service.get_partner(read_uow(), partner_id)

    @requires("partners:write")
    @partners_blp.arguments(PartnerUpdateSchema)
    @partners_blp.response(200, PartnerSchema)
    @partners_blp.alt_response(404, description="No partner has this id.")
    @partners_blp.alt_response(409, description="The status move is not allowed, or the partner is terminated.")
    def patch(self, changes, partner_id):
        """Change a partner's profile or status; terminated is final."""
        return _shown_partner(service.update_partner(uow(), partner_id, changes))


@partners_blp.route("/<uuid:partner_id>/contracts")
class PartnerContracts(MethodView):
    @requires("partners:read")
    @partners_blp.arguments(ContractQuerySchema, location="query")
    @partners_blp.response(200, ContractPageSchema)
    @partners_blp.alt_response(404, description="No partner has this id.")
    def get(self, args, partner_id):
        """A partner's contracts, newest first or by `sort`, each with the terms in force."""
        return service.list_contracts(read_uow(), partner_id, **args)

    @requires("partners:write")
    @idempotent(IdempotencyRecord)
    @partners_blp.arguments(ContractCreateSchema)
    @partners_blp.response(201, ContractSchema, headers=_ETAG_HEADER)
    @partners_blp.alt_response(404, description="No partner has this id.")
    @partners_blp.alt_response(409, description="The partner is terminated.")
    @partners_blp.doc(**_IDEMPOTENT)
    def post(self, data, partner_id):
        """Make a contract with the partner; its terms become version 1."""
        detail = service.create_contract(uow(), partner_id, data, actor=_actor())
        return _shown_contract(detail), 201, {**_contract_headers(detail),
                                              "Location": f"{contracts_blp.url_prefix}/{detail['id']}"}


# -- /api/v1/contracts -------------------------------------------------------------------------------------

@contracts_blp.route("/<uuid:contract_id>")
class ContractById(MethodView):
    @requires("partners:read")
    @contracts_blp.response(200, ContractSchema, headers=_ETAG_HEADER)
    @contracts_blp.alt_response(404, description="No contract has this id.")
    def get(self, contract_id):
        """A contract with the terms in force; the ETag names their version."""
        detail = service.get_contract(read_uow(), contract_id)
        return detail, 200, _contract_headers(detail)


@contracts_blp.route("/<uuid:contract_id>/terms")
class ContractTermsView(MethodView):
    @requires("partners:read")
    @contracts_blp.arguments(TermsQuerySchema, location="query")
    @contracts_blp.response(200, TermsHistorySchema, headers=_ETAG_HEADER)
    @contracts_blp.alt_response(404, description="No contract has this id.")
    def get(self, args, contract_id):
        """The versions of the contract's terms, newest first or by `sort`, in cursor pages."""
        history = service.list_terms(read_uow(), contract_id, **args)
        return history, 200, _contract_headers(history)

    @requires("partners:write")
    @contracts_blp.arguments(TermsSchema)
    @contracts_blp.response(200, ContractSchema, headers=_ETAG_HEADER)
    @contracts_blp.alt_response(404, description="No contract has this id.")
    @contracts_blp.alt_response(409, description="The partner is terminated.")
    @contracts_blp.alt_response(412, description="If-Match names a version that is no longer in force.")
    @contracts_blp.alt_response(428, description="If-Match is missing.")
    @contracts_blp.doc(parameters=[_IF_MATCH])
    def put(self, terms, contract_id):
        """Replace the terms with a complete new set, as a new version (unchanged terms make none)."""
        detail, _created = service.change_terms(
            uow(), contract_id, terms, replace=True, actor=_actor(),
            precondition=Precondition.from_request())
        return _shown_contract(detail), 200, _contract_headers(detail)

    @requires("partners:write")
    @contracts_blp.arguments(TermsChangeSchema)
    @contracts_blp.response(201, ContractSchema, headers=_ETAG_HEADER)
    @contracts_blp.alt_response(200, schema=ContractSchema, description="The terms were already so; no version was made.")
    @contracts_blp.alt_response(404, description="No contract has this id.")
    @contracts_blp.alt_response(409, description="The partner is terminated.")
    @contracts_blp.alt_response(412, description="If-Match names a version that is no longer in force.")
    @contracts_blp.alt_response(428, description="If-Match is missing.")
    @contracts_blp.doc(parameters=[_IF_MATCH])
    def post(self, changes, contract_id):
        """Change some terms; the others carry over from the version in force into the new version."""
        detail, created = service.change_terms(
            uow(), contract_id, changes, replace=False, actor=_actor(),
            precondition=Precondition.from_request())
        headers = _contract_headers(detail)
        if not created:
            return _shown_contract(detail), 200, headers
        location = f"{contracts_blp.url_prefix}/{contract_id}/terms/{detail['current_version']}"
        return _shown_contract(detail), 201, {**headers, "Location": location}


# A version is an INTEGER column: past its range no version can exist (404 from routing, not a database overflow).
@contracts_blp.route("/<uuid:contract_id>/terms/<int(min=1, max=2147483647):version>")
class ContractTermsVersion(MethodView):
    @requires("partners:read")
    @contracts_blp.response(200, TermsVersionSchema)
    @contracts_blp.alt_response(404, description="No contract has this id, or it has no such version.")
    def get(self, contract_id, version):
        """One version of the contract's terms, current or past."""
        return service.get_terms_version(read_uow(), contract_id, version)


# -- /api/v1/partner-portal --------------------------------------------------------------------------------

@portal_blp.route("/me")
class PortalMe(MethodView):
    @requires(kind="partner")
    @portal_blp.response(200, PartnerSchema)
    def get(self):
        """The partner bound to the calling key."""
        return service.get_own_partner(read_uow(), _caller_partner_id())


@portal_blp.route("/contracts")
class PortalContracts(MethodView):
    @requires(kind="partner")
    @portal_blp.arguments(ContractQuerySchema, location="query")
    @portal_blp.response(200, PortalContractPageSchema)
    def get(self, args):
        """The calling partner's contracts, newest first or by `sort`, each with the terms in force."""
        return service.list_own_contracts(read_uow(), _caller_partner_id(), **args)


@portal_blp.route("/contracts/<uuid:contract_id>")
class PortalContractById(MethodView):
    @requires(kind="partner")
    @portal_blp.response(200, PortalContractSchema, headers=_ETAG_HEADER)
    @portal_blp.alt_response(404, description="The calling partner has no contract with this id.")
    def get(self, contract_id):
        """One of the calling partner's contracts with the terms in force."""
        detail = service.get_own_contract(read_uow(), _caller_partner_id(), contract_id)
        return detail, 200, _contract_headers(detail)


@portal_blp.route("/contracts/<uuid:contract_id>/terms")
class PortalContractTerms(MethodView):
    @requires(kind="partner")
    @portal_blp.arguments(TermsQuerySchema, location="query")
    @portal_blp.response(200, PortalTermsHistorySchema, headers=_ETAG_HEADER)
    @portal_blp.alt_response(404, description="The calling partner has no contract with this id.")
    def get(self, args, contract_id):
        """The versions of the terms of one of the calling partner's contracts, newest first or by `sort`, paged."""
        history = service.list_own_terms(read_uow(), _caller_partner_id(), contract_id, **args)
        return history, 200, _contract_headers(history)
