"""HTTP entrypoints of analytics refreshes: ask for one, list them, follow one's progress.

Asking needs the privileged `contacts:analytics` scope: a refresh reads every contact and every purchase, so
it is not something any writing key may start at will. Reading refreshes is `contacts:read`, like the reports.
"""
from __future__ import annotations

from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import requires
from services.common.pagination import PageArgs, sort_field
from services.common.schemas import Moment
from services.common.web import read_uow, runtime, uow

from ..models import IdempotencyRecord
from . import refreshes
from .refresh import STEPS

START_SCOPE = "contacts:analytics"
READ_SCOPE = "contacts:read"

blp = Blueprint("analytics-refreshes", __name__, url_prefix="/api/v1/analytics/refreshes",
                description="Computing the analytics snapshot of a currency: every measure, step by step, "
                            "in the contacts worker.")


class RefreshCreateSchema(Schema):
    currency = fields.String(validate=validate.Regexp(r"^[A-Za-z]{3}$", error="Must be a three-letter ISO 4217 "
                                                                                "currency code."),
                             metadata={"description": "The currency to compute in; default the base currency "
                                                      "(CRM_BASE_CURRENCY)."})
    as_of = Moment(metadata={"description": "The instant the measures describe (the window ends here); default "
                                            "now. Not in the future."})
    parameters = fields.Dict(keys=fields.String(), metadata={
        "description": "Overrides of the suite's parameters for this refresh only, e.g. {\"window_days\": 180} "
                       "(docs/analytics.md lists them); an unknown or invalid one is a 422 naming "
                       "`parameters.<name>`."})


class RefreshSchema(Schema):
    id = fields.UUID()
    status = fields.String(metadata={"enum": list(refreshes.STATUSES)})
    trigger = fields.String(metadata={"description": "Who asked: api, schedule, cli or report."})
    currency = fields.String()
    as_of = fields.AwareDateTime()
    parameters = fields.Dict(metadata={"description": "Every parameter the refresh runs with."})
    step = fields.String(allow_none=True, metadata={
        "description": f"The step running, or the last one done: one of {', '.join(STEPS)}; null before the first."})
    steps_done = fields.Integer()
    steps_total = fields.Integer()
    progress = fields.Function(refreshes.progress, metadata={"type": "number",
                                                             "description": "Percent of the steps done."})
    timings = fields.Dict(keys=fields.String(), values=fields.Float(),
                          metadata={"description": "Seconds each step done so far took."})
    customers = fields.Integer(allow_none=True, metadata={"description": "Contacts in the snapshot."})
    error = fields.String(allow_none=True, metadata={"description": "Why a failed refresh stopped."})
    requested_by = fields.String(metadata={"description": "The API key's id, or `schedule`."})
    created_at = fields.AwareDateTime()
    started_at = fields.AwareDateTime(allow_none=True)
    finished_at = fields.AwareDateTime(allow_none=True)


class RefreshQuerySchema(PageArgs):
    status = fields.String(validate=validate.OneOf(refreshes.STATUSES))
    currency = fields.String(validate=validate.Regexp(r"^[A-Za-z]{3}$", error="Must be a three-letter currency "
                                                                                "code."))
    sort = sort_field(*refreshes.SORTS, default=None)  # no sort: newest first


class RefreshPageSchema(Schema):
    items = fields.List(fields.Nested(RefreshSchema))
    next_cursor = fields.String(allow_none=True)


@blp.route("")
class Refreshes(MethodView):
    @requires(START_SCOPE)
    @idempotent(IdempotencyRecord)
    @blp.arguments(RefreshCreateSchema)
    @blp.response(202, RefreshSchema, headers={"Location": {"description": "The refresh's URL.",
                                                            "schema": {"type": "string"}}})
    @blp.doc(parameters=[HEADER_PARAMETER])
    def post(self, data):
        """Ask for a refresh of one currency's analytics; a worker computes it (follow the Location)."""
        created = refreshes.request_refresh(runtime(), currency=data.get("currency"), as_of=data.get("as_of"),
                                            parameters=data.get("parameters"), requested_by=g.principal.key_id,
                                            uow=uow())
        return created, 202, {"Location": f"{blp.url_prefix}/{created.id}"}

    @requires(READ_SCOPE)
    @blp.arguments(RefreshQuerySchema, location="query")
    @blp.response(200, RefreshPageSchema)
    def get(self, args):
        """List refreshes, newest first (or by `sort`), optionally of one `status` and `currency`."""
        return refreshes.list_refreshes(read_uow(), **args)


@blp.route("/<uuid:refresh_id>")
class RefreshById(MethodView):
    @requires(READ_SCOPE)
    @blp.response(200, RefreshSchema)
    @blp.alt_response(404, description="No refresh has this id.")
    def get(self, refresh_id):
        """One refresh: its status, the step it is at, each step's time, and why it failed if it did."""
        return refreshes.get_refresh(runtime(), refresh_id)
