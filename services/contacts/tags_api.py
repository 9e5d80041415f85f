"""HTTP entrypoints of a contact's tags: add some, remove one."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from services.common.etags import Precondition, etag
from services.common.identity import record_or_receipt, requires
from services.common.web import uow

from . import tags
from .record_schemas import TagsSchema
from .schemas import ContactSchema

blp = Blueprint("contact_tags", __name__, url_prefix="/api/v1/contacts",
                description="Tags on contacts: lower-case labels to group and filter them (`?tag=`).")

_ETAG_HEADER = {"ETag": {"description": 'The contact\'s version as a weak tag, `W/"<version>"`.',
                         "schema": {"type": "string"}}}
READ_SCOPE = "contacts:read"


def _answer(contact):
    shown = record_or_receipt(READ_SCOPE, contact, id=contact.id, version=contact.version)
    return shown, 200, {"ETag": etag(contact.version)}


@blp.route("/<uuid:contact_id>/tags")
class ContactTags(MethodView):
    @requires("contacts:write")
    @blp.arguments(TagsSchema)
    @blp.response(200, ContactSchema, headers=_ETAG_HEADER)
    @blp.alt_response(404, description="No contact has this id.")
    @blp.alt_response(412, description="If-Match named a version that is no longer current.")
    def post(self, data, contact_id):
        """Add tags to a contact (those it has already change nothing). Without `contacts:read`: id and version."""
        return _answer(tags.add_contact_tags(uow(), contact_id, data["tags"], precondition=Precondition.from_request()))


@blp.route("/<uuid:contact_id>/tags/<string:tag>")
class ContactTag(MethodView):
    @requires("contacts:write")
    @blp.response(200, ContactSchema, headers=_ETAG_HEADER)
    @blp.alt_response(404, description="No contact has this id.")
    @blp.alt_response(412, description="If-Match named a version that is no longer current.")
    def delete(self, contact_id, tag):
        """Remove a tag from a contact (one it does not have changes nothing)."""
        return _answer(tags.remove_contact_tag(uow(), contact_id, tag, precondition=Precondition.from_request()))
