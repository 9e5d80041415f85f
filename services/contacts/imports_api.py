"""HTTP entrypoints of contact imports: submit a CSV, follow its progress, page through the rows it refused.

The worker applies an import (import_jobs.py); these views only store it and read it. Every route needs
`contacts:import`, also the reads: an import holds the file's data and its errors quote the rows. The file comes
as multipart/form-data up to CRM_MAX_UPLOAD_BYTES (an upload route of the kit, and of the suite registry, so
the gateway lets it through), or base64 in JSON within the 1 MiB of any JSON body.
"""
from __future__ import annotations

from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint

from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import requires
from services.common.pagination import PageArgs
from services.common.web import read_uow, upload_arguments, uow

from . import imports
from .import_schemas import (ImportCreateSchema, ImportErrorPageSchema, ImportPageSchema, ImportQuerySchema,
                             ImportSchema, ImportUploadSchema)
from .models import IdempotencyRecord

SCOPE = "contacts:import"

blp = Blueprint("contact-imports", __name__, url_prefix="/api/v1/contacts/imports",
                description="CSV imports of contacts, applied by the contacts worker in chunks.")


@blp.route("")
class Imports(MethodView):
    @requires(SCOPE)
    @idempotent(IdempotencyRecord)
    @upload_arguments(blp, ImportUploadSchema, json_schema=ImportCreateSchema)
    @blp.response(202, ImportSchema, headers={"Location": {"description": "The import's URL.",
                                                           "schema": {"type": "string"}}})
    @blp.doc(parameters=[HEADER_PARAMETER])
    def post(self, data):
        """Submit a CSV file and its column mapping; the worker imports it (follow the Location)."""
        work = uow()
        created = imports.submit_import(work, data["file"], data["mapping"], requested_by=g.principal.key_id,
                                        correlation_id=work.correlation_id)
        return created, 202, {"Location": f"{blp.url_prefix}/{created.id}"}

    @requires(SCOPE)
    @blp.arguments(ImportQuerySchema, location="query")
    @blp.response(200, ImportPageSchema)
    def get(self, args):
        """List imports, newest first (or by `sort`), optionally in one `status`."""
        return imports.list_imports(read_uow(), **args)


@blp.route("/<uuid:import_id>")
class ImportById(MethodView):
    @requires(SCOPE)
    @blp.response(200, ImportSchema)
    @blp.alt_response(404, description="No import has this id.")
    def get(self, import_id):
        """One import: its status, counts and progress."""
        return imports.get_import(read_uow(), import_id)


@blp.route("/<uuid:import_id>/errors")
class ImportErrors(MethodView):
    @requires(SCOPE)
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, ImportErrorPageSchema)
    @blp.alt_response(404, description="No import has this id.")
    def get(self, args, import_id):
        """The values an import refused, in row order: row number, field and why."""
        return imports.list_import_errors(read_uow(), import_id, **args)
