"""HTTP entrypoints of the six analytics reports (GET /api/v1/analytics/<measure>); the reads are in reports.py.

One view per measure, built from its Report, so the six answer alike: `?currency=` (default the base currency),
the measure's class filter (repeatable), `?limit=&cursor=`, and `?refresh=true`, which needs the privileged
`contacts:analytics` scope on top of `contacts:read`.
"""
from __future__ import annotations

from flask import abort
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, post_load, validate

from services.common.identity import current_principal, requires
from services.common.pagination import PageArgs
from services.common.web import read_uow, runtime

from ..models import MONEY_PLACES
from . import reports
from .contact_measures import MONEY, NUMBER, TEXT, TIME

REFRESH_SCOPE = "contacts:analytics"

blp = Blueprint("analytics_reports", __name__, url_prefix="/api/v1/analytics",
                description="Customer analytics of the current snapshot: ABC, RFM, lifetime value, the profitability "
                            "matrix, the customer pyramid and lifecycle stages (docs/api-analytics.md).")

SUMMARIES = {
    "abc": "ABC analysis: customers, revenue and shares per class, the Pareto curve, and the customers of a class "
           "by rank.",
    "rfm": "RFM: customers per segment and per score, and the customers of a segment by window revenue.",
    "clv": "Customer lifetime value: totals, the retention and discount rate used, quintiles, and customers by CLV.",
    "profitability": "The profitability matrix: customers and profit per quadrant with the thresholds used, and the "
                     "customers of a quadrant by current profit.",
    "pyramid": "The customer pyramid: customers and revenue per level, and the customers of a level by revenue.",
    "lifecycle": "Lifecycle stages: customers per stage, and the customers of a stage by their purchases (every "
                 "currency).",
}


class Currency(fields.String):
    """An ISO 4217-style code: three letters, any case, upper-cased."""

    def __init__(self, **kwargs):
        super().__init__(validate=validate.Regexp(r"^[A-Za-z]{3}\Z", error="Must be three letters, e.g. EUR."),
                         **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).upper()


class SnapshotSchema(Schema):
    id = fields.UUID(metadata={"description": "The refresh that computed the snapshot."})
    currency = fields.String()
    as_of = fields.AwareDateTime(metadata={"description": "The instant the measures describe; the window ends here."})
    window_start = fields.AwareDateTime(metadata={"description": "as_of - window_days (the window's first instant)."})
    finished_at = fields.AwareDateTime()
    customers = fields.Integer(allow_none=True, metadata={"description": "Contacts in the snapshot."})
    parameters = fields.Dict(metadata={"description": "The parameters the refresh ran with (docs/analytics.md)."})


_VALUE_FIELDS = {
    MONEY: lambda: fields.Decimal(as_string=True, places=MONEY_PLACES, allow_none=True),
    NUMBER: lambda: fields.Integer(allow_none=True),
    TEXT: lambda: fields.String(allow_none=True),
    TIME: lambda: fields.AwareDateTime(allow_none=True),
}


def _schemas(report: reports.Report) -> tuple[type[Schema], type[Schema]]:
    """The query and the page schema of one report."""
    name = report.measure.title()
    query = {"currency": Currency(load_default=None, metadata={
                 "description": "The snapshot's currency; default the base currency (CRM_BASE_CURRENCY)."}),
             "refresh": fields.Boolean(load_default=False, metadata={
                 "description": f"Run a refresh first, in this request (scope `{REFRESH_SCOPE}`); refused (409) when "
                                f"there are more contacts than CRM_ANALYTICS_SYNC_LIMIT."})}
    if report.class_arg:
        query[report.class_arg] = fields.List(fields.String(validate=validate.OneOf(report.classes)), metadata={
            "description": f"Only customers of this {report.class_arg}; repeat it for any of several."})
    item = {"contact_id": fields.UUID(), "email": fields.String(), "first_name": fields.String(allow_none=True),
            "last_name": fields.String(allow_none=True),
            **{value: _VALUE_FIELDS[kind]() for value, (_column, kind) in report.values.items()}}
    item_schema = Schema.from_dict(item, name=f"Analytics{name}Item")
    page = Schema.from_dict({
        "snapshot": fields.Nested(SnapshotSchema),
        "summary": fields.Dict(metadata={"description": "The measure's summary (docs/api-analytics.md)."}),
        "items": fields.List(fields.Nested(item_schema)),
        "next_cursor": fields.String(allow_none=True)}, name=f"Analytics{name}Report")
    return _with_class_list(PageArgs.from_dict(query, name=f"Analytics{name}Query"), report), page


def _with_class_list(schema: type[Schema], report: reports.Report) -> type[Schema]:
    """The query schema handing the class filter on as `classes`, whatever the measure calls it."""

    class Query(schema):
        @post_load
        def _classes(self, data, **_kw):
            data["classes"] = data.pop(report.class_arg, None) if report.class_arg else None
            return data

    Query.__name__ = schema.__name__
    return Query


def _report_view(report: reports.Report) -> type[MethodView]:
    query, page = _schemas(report)

    def get(self, args):
        currency = args.pop("currency") or runtime().settings.base_currency
        if args.pop("refresh"):
            principal = current_principal()
            if not principal.has_scope(REFRESH_SCOPE):
                abort(403, description=f"the API key lacks the scope {REFRESH_SCOPE!r} that ?refresh=true needs")
            reports.refresh_now(runtime(), currency=currency, requested_by=principal.key_id)
        return reports.read_report(read_uow(), report.measure, currency=currency, **args)

    get.__doc__ = SUMMARIES[report.measure]
    get = blp.alt_response(409, description="?refresh=true with more contacts than CRM_ANALYTICS_SYNC_LIMIT (use "
                                            "POST /api/v1/analytics/refreshes), or a refresh of the currency is "
                                            "running.")(get)
    get = blp.alt_response(404, description="The currency has no completed snapshot yet.")(get)
    get = blp.response(200, page)(get)
    get = blp.arguments(query, location="query")(get)
    get = requires("contacts:read")(get)  # outermost: a caller without the scope is refused before parsing
    view = type(f"{report.measure.title()}Report", (MethodView,), {"get": get})
    blp.route(f"/{report.measure}")(view)
    return view


VIEWS = {measure: _report_view(report) for measure, report in reports.REPORTS.items()}
