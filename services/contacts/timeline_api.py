"""HTTP entrypoint of the customer 360 timeline: parse, call timeline.list_timeline, serialise."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from services.common.identity import requires
from services.common.pagination import PageArgs, sort_field
from services.common.web import read_uow

from . import timeline

blp = Blueprint("timeline", __name__, url_prefix="/api/v1/contacts",
                description="The customer 360: everything that happened to a person, across the suite.")


class TimelineQuerySchema(PageArgs):
    kind = fields.List(fields.String(validate=validate.OneOf(timeline.KINDS, error="Must be one of: {choices}.")),
                       metadata={"description": "Only these kinds (repeat the parameter for several)."})
    sort = sort_field(*timeline.SORTS, default=None)  # no sort: newest first


class TimelineEntrySchema(Schema):
    id = fields.UUID(metadata={"description": "The id of the record or event the entry came from."})
    kind = fields.String(metadata={"description": "What happened; docs/api-contacts.md lists every kind."})
    occurred_at = fields.AwareDateTime()
    summary = fields.String(allow_none=True, metadata={"description": "One line for people to read."})
    data = fields.Dict(keys=fields.String(), metadata={"description": "The kind's fields, ids and amounts as strings."})
    source = fields.String(metadata={"description": "The service it came from: contacts, leads or loyalty."})
    contact_id = fields.UUID(allow_none=True)
    lead_id = fields.UUID(allow_none=True, metadata={"description": "Set on lead entries, from before the lead "
                                                                    "became this contact too."})


class TimelinePageSchema(Schema):
    items = fields.List(fields.Nested(TimelineEntrySchema))
    next_cursor = fields.String(allow_none=True)


@blp.route("/<uuid:contact_id>/timeline")
class Timeline(MethodView):
    @requires("contacts:read")
    @blp.arguments(TimelineQuerySchema, location="query")
    @blp.response(200, TimelinePageSchema)
    @blp.alt_response(404, description="No contact has this id.")
    def get(self, args, contact_id):
        """A contact's timeline, newest first (`sort=occurred_at`: oldest first), from every service."""
        return timeline.list_timeline(read_uow(), contact_id, kinds=args.get("kind"), limit=args["limit"],
                                      cursor=args["cursor"], sort=args["sort"])
