"""HTTP entrypoints of custom attribute definitions: define, list, read, delete."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import requires
from services.common.pagination import PageArgs
from services.common.web import read_uow, uow

from . import attributes
from .models import IdempotencyRecord
from .record_schemas import AttributeDefinitionCreateSchema, AttributeDefinitionPageSchema, AttributeDefinitionSchema

blp = Blueprint("contact_attributes", __name__, url_prefix="/api/v1/contacts/attributes",
                description="Custom attributes: typed fields defined through the API, set in a contact's `attributes`.")


@blp.route("")
class AttributeDefinitions(MethodView):
    @requires("contacts:read")
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, AttributeDefinitionPageSchema)
    def get(self, args):
        """List the attribute definitions, newest first."""
        return attributes.list_definitions(read_uow(), **args)

    @requires("contacts:write")
    @idempotent(IdempotencyRecord)
    @blp.arguments(AttributeDefinitionCreateSchema)
    @blp.response(201, AttributeDefinitionSchema)
    @blp.alt_response(409, description="An attribute with this name is defined already, or the limit is reached.")
    @blp.doc(parameters=[HEADER_PARAMETER])
    def post(self, data):
        """Define a custom attribute: its name, type and, for an enum, its options."""
        definition = attributes.create_definition(uow(), data)
        return definition, 201, {"Location": f"{blp.url_prefix}/{definition.name}"}


# Documented with its pattern, so a client (and a fuzzer) knows which names can exist.
_NAME_PARAMETER = {"in": "path", "name": "name", "required": True, "description": "The attribute's name.",
                   "schema": {"type": "string", "pattern": f"^{attributes.NAME.pattern}$"}}


@blp.route("/<string:name>", parameters=[_NAME_PARAMETER])
class AttributeDefinitionByName(MethodView):
    @requires("contacts:read")
    @blp.response(200, AttributeDefinitionSchema)
    @blp.alt_response(404, description="No attribute is defined with this name.")
    def get(self, name):
        """One attribute definition."""
        return attributes.get_definition(read_uow(), name)

    @requires("contacts:write")
    @blp.response(204)
    @blp.alt_response(404, description="No attribute is defined with this name.")
    @blp.alt_response(409, description="Contacts still have values for it; remove them first.")
    def delete(self, name):
        """Delete an attribute definition that no contact has a value for."""
        attributes.delete_definition(uow(), name)
