"""HTTP entrypoints of the contacts service: parse, call one use case, serialise.

`@requires` is the outermost decorator of every view, so a caller without the scope is refused (403) before
its input is parsed. Creating POSTs honour `Idempotency-Key`: `@idempotent` sits under `@requires` and above
the flask-smorest decorators (it stores the serialised response); every view takes its unit of work from
`uow()`, which under a key is the one that also stores the response, so both commit together.
"""
from __future__ import annotations

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from services.common.etags import Precondition, etag
from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import record_or_receipt, requires
from services.common.web import read_uow, runtime, uow

from . import service, vcard
from .models import IdempotencyRecord
from .schemas import (
    ContactCreateSchema,
    ContactDetailSchema,
    ContactPageSchema,
    ContactQuerySchema,
    ContactSchema,
    ContactUpdateSchema,
)

blp = Blueprint("contacts", __name__, url_prefix="/api/v1/contacts",
                description="One record per person: created from converted leads or directly.")

_ETAG_HEADER = {"ETag": {"description": 'The contact\'s version as a weak tag, `W/"<version>"`; send it back in If-Match.',
                         "schema": {"type": "string"}}}
_IDEMPOTENT = {"parameters": [HEADER_PARAMETER]}


def _headers(contact) -> dict[str, str]:
    return {"ETag": etag(contact.version)}


def _base_currency() -> str:
    """The currency of the analytics a contact shows and is filtered by (CRM_BASE_CURRENCY)."""
    return runtime().settings.base_currency


def _shown(contact):
    """The contact, or for a key without `contacts:read` only its id and version (docs/api-contacts.md)."""
    return record_or_receipt(service.READ_SCOPE, contact, id=contact.id, version=contact.version)


@blp.route("")
class Contacts(MethodView):
    @requires("contacts:read")
    @blp.arguments(ContactQuerySchema, location="query")
    @blp.response(200, ContactPageSchema)
    def get(self, args):
        """List contacts, newest first or by `sort`, by exact e-mail or a search term over name, e-mail and company."""
        return service.list_contacts(read_uow(), analytics_currency=_base_currency(), **args)

    @requires("contacts:write")
    @idempotent(IdempotencyRecord)
    @blp.arguments(ContactCreateSchema)
    @blp.response(201, ContactSchema, headers=_ETAG_HEADER)
    @blp.alt_response(409, description="Another contact has this e-mail; `existing_contact_id` names it "
                                       "(only to a key with `contacts:read`).")
    @blp.doc(**_IDEMPOTENT)
    def post(self, data):
        """Create a contact; the normalised e-mail must be new. Without `contacts:read`: only id and version."""
        contact = service.create_contact(uow(), data)
        return _shown(contact), 201, {**_headers(contact), "Location": f"{blp.url_prefix}/{contact.id}"}


@blp.route("/<uuid:contact_id>")
class ContactById(MethodView):
    @requires("contacts:read")
    @blp.response(200, ContactDetailSchema, headers=_ETAG_HEADER)
    @blp.alt_response(404, description="No contact has this id.")
    @blp.alt_response(301, description="The id was merged: `Location` and `survivor_id` name the contact it "
                                       "lives on as.")
    @blp.alt_response(410, description="The contact was erased; `erasure_id` names the erasure.")
    @blp.alt_response(200, success=True, content_type=vcard.MEDIA_TYPE, schema={"type": "string"},
                      description="The contact; as a vCard 4.0 (RFC 6350) for `Accept: text/vcard`.")
    def get(self, contact_id):
        """One contact with its purchase metrics, and its version as the ETag; a vCard 4.0 for `Accept: text/vcard`."""
        details = service.get_contact_details(read_uow(), contact_id, analytics_currency=_base_currency())
        headers = {"ETag": etag(details["version"])}
        if vcard.wanted(request.accept_mimetypes):
            return Response(vcard.vcard(details), mimetype=vcard.MEDIA_TYPE, headers=headers)
        return details, 200, headers

    @requires("contacts:write")
    @blp.arguments(ContactUpdateSchema)
    @blp.response(200, ContactSchema, headers=_ETAG_HEADER)
    @blp.alt_response(404, description="No contact has this id.")
    @blp.alt_response(410, description="The id was merged (`survivor_id` names the contact it lives on as) or "
                                       "erased (`erasure_id`).")
    @blp.alt_response(409, description="Another contact has the new e-mail; `existing_contact_id` names it "
                                       "(only to a key with `contacts:read`).")
    @blp.alt_response(412, description="If-Match named a version that is no longer current.")
    def patch(self, changes, contact_id):
        """Change some fields of a contact (If-Match refuses lost updates). Without `contacts:read`: id and version."""
        contact = service.update_contact(uow(), contact_id, changes,
                                         precondition=Precondition.from_request())
        return _shown(contact), 200, _headers(contact)
