"""HTTP entrypoints of the leads service: parse, call one use case, serialise.

`@requires` is the outermost decorator of every view, so a caller without the scope is refused (403) before
its input is parsed. Creating POSTs honour `Idempotency-Key`: `@idempotent` sits under `@requires` and above
the flask-smorest decorators (it stores the serialised response); every view takes its unit of work from
`uow()`, which under a key is the one that also stores the response, so both commit together.
"""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import PLUGINS_READ, current_principal, record_or_receipt, requires
from services.common.plugins import plugin_listing
from services.common.web import read_uow, runtime, uow

from . import service
from .models import IdempotencyRecord
from .schemas import LeadCreateSchema, LeadDetailSchema, LeadPageSchema, LeadQuerySchema, LeadSchema, LeadUpdateSchema

blp = Blueprint("leads", __name__, url_prefix="/api/v1/leads", description="Capture, score and convert leads.")
plugins_blp = Blueprint("plugins", __name__, url_prefix="/api/v1/plugins", description="Loaded plugins.")

_IDEMPOTENT = {"parameters": [HEADER_PARAMETER]}


@blp.route("")
class Leads(MethodView):
    @requires("leads:read")
    @blp.arguments(LeadQuerySchema, location="query")
    @blp.response(200, LeadPageSchema)
    def get(self, args):
        """List leads, newest first or by `sort`, filtered by status, source and minimum score."""
        return service.list_leads(read_uow(), **args)

    @requires("leads:write")
    @idempotent(IdempotencyRecord)
    @blp.arguments(LeadCreateSchema)
    @blp.response(201, LeadDetailSchema)
    @blp.alt_response(200, schema=LeadDetailSchema, description="An open lead with this e-mail existed; the touch was recorded on it.")
    @blp.alt_response(202, description="To a key without `leads:read`, either way: `{\"id\"}` of the lead the "
                                       "capture landed on, nothing else (new or existing is not said).")
    @blp.doc(**_IDEMPOTENT)
    def post(self, data):
        """Capture a lead; an open lead with the same e-mail is returned with the new touch recorded."""
        work = uow()
        lead, created = service.capture_lead(work, data, plugins=runtime().plugins)
        if not current_principal().has_scope(service.READ_SCOPE):
            # Neither the open lead's data nor whether there was one: a write-only key learns only its receipt.
            return {"id": lead.id}, 202
        detail = service.get_lead(work, lead.id)  # the same unit of work: the new lead is visible in it
        return (detail, 201) if created else (detail, 200)


@blp.route("/<uuid:lead_id>")
class LeadById(MethodView):
    @requires("leads:read")
    @blp.response(200, LeadDetailSchema)
    def get(self, lead_id):
        """A lead with its score, the factors behind it, and its touches."""
        return service.get_lead(read_uow(), lead_id)

    @requires("leads:write")
    @blp.arguments(LeadUpdateSchema)
    @blp.response(200, LeadDetailSchema)
    def patch(self, changes, lead_id):
        """Update a lead's profile (re-scored) or move it along the pipeline. Without `leads:read`: only its id."""
        lead = service.update_lead(uow(), lead_id, changes, plugins=runtime().plugins)
        if not current_principal().has_scope(service.READ_SCOPE):
            return {"id": lead.id}
        return service.get_lead(uow(), lead_id)


@blp.route("/<uuid:lead_id>/convert")
class ConvertLead(MethodView):
    @requires("leads:write")
    @blp.response(202, LeadSchema)
    def post(self, lead_id):
        """Convert a lead into a contact (asynchronously); converting twice gives the same result."""
        lead = service.convert_lead(uow(), lead_id)
        return record_or_receipt(service.READ_SCOPE, lead, id=lead.id)


@plugins_blp.route("")
class Plugins(MethodView):
    @requires(PLUGINS_READ)
    @plugins_blp.response(200)
    def get(self):
        """The plugins this service loaded, with the hooks each implements and any that failed to load."""
        return plugin_listing(runtime().plugins)
