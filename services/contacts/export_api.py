"""HTTP entrypoint of the contacts CSV export: the list's filters in, a streamed text/csv out."""
from __future__ import annotations

from flask import Response, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint

from services.common.identity import requires
from services.common.web import read_uow, runtime

from . import export
from .schemas import ContactQuerySchema

blp = Blueprint("contact-export", __name__, url_prefix="/api/v1/contacts/export",
                description="Every contact matching the list's filters as one CSV file.")

# The list's filters without its paging and order: the export is every match, oldest first.
_NOT_FILTERS = ("limit", "cursor", "sort")
ExportQuerySchema = ContactQuerySchema(
    exclude=[name for name in _NOT_FILTERS if name in ContactQuerySchema._declared_fields])


@blp.route("")
class Export(MethodView):
    @requires("contacts:export")
    @blp.arguments(ExportQuerySchema, location="query")
    @blp.alt_response(200, success=True, content_type="text/csv", schema={"type": "string"}, description=(
        "A header row, then one row per contact: " + ", ".join(export.COLUMNS) + ". UTF-8, CRLF line ends; "
        "cells that would start a spreadsheet formula get a leading `'`."))
    def get(self, filters):
        """Export the contacts matching the list's filters as CSV, streamed (oldest first)."""
        rows = export.export_csv(read_uow(), {**filters, "analytics_currency": runtime().settings.base_currency})
        return Response(stream_with_context(rows), mimetype="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="contacts.csv"'})
