"""HTTP entrypoints of the leads service: parse, call one use case, serialise.

Creating POSTs honour `Idempotency-Key`: `@idempotent` sits under `@requires` and above the flask-smorest
decorators (it stores the serialised response), and the views take their unit of work from `request_uow()`
so the change and the stored response commit together.
"""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from services.common.idempotency import HEADER_PARAMETER, idempotent, request_uow
from services.common.identity import requires
from services.common.web import runtime, uow

from . import service
from .models import IdempotencyRecord
from .schemas import LeadCreateSchema, LeadDetailSchema, LeadPageSchema, LeadQuerySchema, LeadSchema, LeadUpdateSchema

blp = Blueprint("leads", __name__, url_prefix="/api/v1/leads", description="Capture, score and convert leads.")
plugins_blp = Blueprint("plugins", __name__, url_prefix="/api/v1/plugins", description="Loaded plugins.")

_IDEMPOTENT = {"parameters": [HEADER_PARAMETER]}


@blp.route("")
class Leads(MethodView):
    @blp.arguments(LeadQuerySchema, location="query")
    @blp.response(200, LeadPageSchema)
    @requires("leads:read")
    def get(self, args):
        """List leads, newest first, filtered by status, source and minimum score."""
        return service.list_leads(uow(), **args)

    @requires("leads:write")
    @idempotent(IdempotencyRecord)
    @blp.arguments(LeadCreateSchema)
    @blp.response(201, LeadDetailSchema)
    @blp.alt_response(200, schema=LeadDetailSchema, description="An open lead with this e-mail existed; the touch was recorded on it.")
    @blp.doc(**_IDEMPOTENT)
    def post(self, data):
        """Capture a lead; an open lead with the same e-mail is returned with the new touch recorded."""
        work = request_uow()
        lead, created = service.capture_lead(work, data, plugins=runtime().plugins)
        detail = service.get_lead(work, lead.id)  # the same unit of work: the new lead is visible in it
        return (detail, 201) if created else (detail, 200)


@blp.route("/<uuid:lead_id>")
class LeadById(MethodView):
    @blp.response(200, LeadDetailSchema)
    @requires("leads:read")
    def get(self, lead_id):
        """A lead with its score, the factors behind it, and its touches."""
        return service.get_lead(uow(), lead_id)

    @blp.arguments(LeadUpdateSchema)
    @blp.response(200, LeadDetailSchema)
    @requires("leads:write")
    def patch(self, changes, lead_id):
        """Update a lead's profile (re-scored) or move it along the pipeline."""
        service.update_lead(uow(), lead_id, changes, plugins=runtime().plugins)
        return service.get_lead(uow(), lead_id)


@blp.route("/<uuid:lead_id>/convert")
class ConvertLead(MethodView):
    @blp.response(202, LeadSchema)
    @requires("leads:write")
    def post(self, lead_id):
        """Convert a lead into a contact (asynchronously); converting twice gives the same result."""
        return service.convert_lead(uow(), lead_id)


@plugins_blp.route("")
class Plugins(MethodView):
    @plugins_blp.response(200)
    @requires()
    def get(self):
        """The plugins this service loaded, with the hooks each implements and any load errors."""
        host = runtime().plugins
        return {"items": host.list_plugins(), "errors": list(getattr(host, "errors", []))}
