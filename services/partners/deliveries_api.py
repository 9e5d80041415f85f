"""HTTP entrypoints for deliveries and scorecards; the rules are in deliveries.py and scorecards.py.

Internal routes hang off `api.partners_blp` (/api/v1/partners/{id}/...), the partner's own on `api.portal_blp`,
so the portal's access check (a suspended or terminated partner is refused) runs before them too.
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import ClassVar

from flask.views import MethodView
from marshmallow import RAISE, Schema, fields, validate

from services.common.db import utcnow
from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import current_principal, record_or_receipt, requires
from services.common.pagination import PageArgs, sort_field
from services.common.schemas import CURRENCY, ExactDecimal, TrimmedInput
from services.common.web import read_uow, runtime, uow

from . import deliveries, scorecards
from .api import _caller_partner_id, partners_blp, portal_blp
from .models import DELIVERY_SORTS, IdempotencyRecord
from .service import READ_SCOPE

_MAX_QUANTITY = Decimal("999999999999.999")  # fits NUMERIC(15, 3)
_MAX_AMOUNT = Decimal("9999999999999.99")  # fits NUMERIC(15, 2)
_PERIOD_HELP = "A quarter (`2026-Q3`), a month (`2026-09`) or a year (`2026`)."


class PeriodField(fields.String):
    """A scorecard period: `2026-Q3`, `2026-09` or `2026`."""

    default_error_messages: ClassVar[dict] = {"invalid_period": "Use a quarter (2026-Q3), a month (2026-09) or a "
                                                                "year (2026)."}

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return scorecards.parse_period(super()._deserialize(value, attr, data, **kwargs))
        except ValueError:
            raise self.make_error("invalid_period") from None

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else value.label


# -- schemas ----------------------------------------------------------------------------------------------

class DeliveryInSchema(TrimmedInput):
    class Meta:
        unknown = RAISE

    order_reference = fields.String(required=True, validate=validate.Length(min=1, max=100), metadata={
        "description": "The order's number in the buyer's system; unique per partner."})
    contract_id = fields.UUID(load_default=None, allow_none=True, metadata={
        "description": "The contract the order was placed under, one of this partner's."})
    promised_on = fields.Date(required=True, metadata={"description": "The day the partner promised delivery."})
    delivered_on = fields.Date(load_default=None, allow_none=True, metadata={
        "description": "The day it arrived; null when nothing arrived. At most one day ahead of UTC today."})
    quantity_ordered = ExactDecimal(3, _MAX_QUANTITY, min_inclusive=False, required=True)
    quantity_delivered = ExactDecimal(3, _MAX_QUANTITY, required=True, metadata={
        "description": "At most quantity_ordered; above 0 needs delivered_on."})
    quantity_rejected = ExactDecimal(3, _MAX_QUANTITY, load_default=Decimal(0), metadata={
        "description": "Rejected for quality; at most quantity_delivered."})
    amount = ExactDecimal(2, _MAX_AMOUNT, required=True, metadata={
        "description": "What the order cost, in `currency`."})
    agreed_amount = ExactDecimal(2, _MAX_AMOUNT, load_default=None, allow_none=True, metadata={
        "description": "What it would have cost at the contract's price; price adherence counts only these."})
    currency = fields.String(required=True, validate=CURRENCY)


class PortalDeliverySchema(Schema):
    id = fields.UUID()
    partner_id = fields.UUID()
    contract_id = fields.UUID(allow_none=True)
    order_reference = fields.String()
    promised_on = fields.Date()
    delivered_on = fields.Date(allow_none=True)
    quantity_ordered = fields.Decimal(as_string=True)
    quantity_delivered = fields.Decimal(as_string=True)
    quantity_rejected = fields.Decimal(as_string=True)
    amount = fields.Decimal(as_string=True)
    agreed_amount = fields.Decimal(as_string=True, allow_none=True)
    currency = fields.String()
    created_at = fields.AwareDateTime(metadata={"description": "When it was recorded."})


class DeliverySchema(PortalDeliverySchema):
    recorded_by = fields.String(allow_none=True, metadata={"description": "The API key that recorded it."})


class DeliveryQuerySchema(PageArgs):
    period = PeriodField(load_default=None, metadata={"description": "Only deliveries promised in this period. "
                                                                     + _PERIOD_HELP})
    contract_id = fields.UUID(load_default=None, metadata={"description": "Only deliveries under this contract."})
    sort = sort_field(*DELIVERY_SORTS, default=None)  # no sort: the most recently recorded first


class DeliveryPageSchema(Schema):
    items = fields.List(fields.Nested(DeliverySchema))
    next_cursor = fields.String(allow_none=True)


class PortalDeliveryPageSchema(Schema):
    items = fields.List(fields.Nested(PortalDeliverySchema))
    next_cursor = fields.String(allow_none=True)


class ScorecardQuerySchema(Schema):
    period = PeriodField(load_default=None, metadata={"description": _PERIOD_HELP + " Default: the current quarter."})


class TrendQuerySchema(Schema):
    periods = fields.Integer(load_default=None, strict=False,
                             validate=validate.Range(min=1, max=scorecards.MAX_TREND_PERIODS), metadata={
                                 "description": f"How many periods up to `to`; default "
                                                f"{scorecards.DEFAULT_TREND_PERIODS}. Not with `from`."})
    first = PeriodField(data_key="from", load_default=None, metadata={
        "description": "The first period (of the same kind as `to`). " + _PERIOD_HELP})
    last = PeriodField(data_key="to", load_default=None, metadata={
        "description": "The last period; default the current one (of `from`'s kind, else the current quarter)."})


def _rate(**kw):
    return fields.Decimal(as_string=True, allow_none=True, **kw)


class ScorecardCountsSchema(Schema):
    deliveries = fields.Integer(metadata={"description": "Deliveries promised in the period."})
    delivered = fields.Integer(metadata={"description": "Of them, the ones that arrived."})
    on_time = fields.Integer(metadata={"description": "Of those, the ones that arrived on or before the promised day."})
    disputes = fields.Integer(metadata={"description": "Disputes opened in the period."})
    priced = fields.Integer(metadata={"description": "Deliveries with an agreed amount."})
    within_price = fields.Integer(metadata={"description": "Of them, the ones that cost no more than agreed."})
    quantity_ordered = fields.Decimal(as_string=True)
    quantity_delivered = fields.Decimal(as_string=True)
    quantity_rejected = fields.Decimal(as_string=True)


class ScorecardRatesSchema(Schema):
    on_time_rate = _rate(metadata={"description": "on_time / delivered."})
    fill_rate = _rate(metadata={"description": "quantity_delivered / quantity_ordered."})
    quality_rate = _rate(metadata={"description": "1 - quantity_rejected / quantity_delivered."})
    dispute_rate = _rate(metadata={"description": "disputes / deliveries (may exceed 1)."})
    price_adherence = _rate(metadata={"description": "within_price / priced."})


class ScorecardCriterionSchema(Schema):
    plugin = fields.String()
    code = fields.String()
    score = fields.Decimal(as_string=True, metadata={"description": "0 to 1."})
    weight = fields.Decimal(as_string=True)
    reason = fields.String()


class ScorecardDegradedSchema(Schema):
    plugin = fields.String()
    hook = fields.String()
    code = fields.String()


class ScorecardSchema(Schema):
    partner_id = fields.UUID()
    period = fields.String(metadata={"description": "`2026-Q3`, `2026-09` or `2026`."})
    start = fields.Date(data_key="from", metadata={"description": "The period's first day."})
    end = fields.Date(data_key="to", metadata={"description": "The period's last day."})
    counts = fields.Nested(ScorecardCountsSchema)
    rates = fields.Nested(ScorecardRatesSchema, metadata={
        "description": "Decimal strings with four places, 0 to 1; null when there is nothing to measure."})
    overall = _rate(metadata={"description": "The weighted average of the rates that have a value (the dispute "
                                             "rate as 1 - rate) and of the plugins' criteria; null with neither."})
    weights = fields.Dict(keys=fields.String(), values=fields.Decimal(as_string=True))
    criteria = fields.List(fields.Nested(ScorecardCriterionSchema), metadata={
        "description": "Criteria added by plugins (crm_score_partner), each with the plugin that gave it."})
    degraded = fields.List(fields.Nested(ScorecardDegradedSchema), metadata={
        "description": "Plugins whose criteria are missing (raised, malformed, timed out)."})


class TrendSchema(Schema):
    partner_id = fields.UUID()
    items = fields.List(fields.Nested(ScorecardSchema), metadata={"description": "Oldest period first."})


# -- helpers ----------------------------------------------------------------------------------------------

def _scoring() -> dict:
    rt = runtime()
    return {"plugins": rt.plugins, "weights": scorecards.weights_from_settings(rt.settings)}


def _today() -> date:
    return utcnow().date()


def _period(args) -> scorecards.Period:
    return args["period"] or scorecards.current_quarter(_today())


def _trend_periods(args) -> list[scorecards.Period]:
    return scorecards.trend_periods(last=args["last"], count=args["periods"], first=args["first"], today=_today())


# -- /api/v1/partners/{id}/deliveries and /scorecard ----------------------------------------------------------

@partners_blp.route("/<uuid:partner_id>/deliveries")
class PartnerDeliveries(MethodView):
    @requires("partners:read")
    @partners_blp.arguments(DeliveryQuerySchema, location="query")
    @partners_blp.response(200, DeliveryPageSchema)
    @partners_blp.alt_response(404, description="No partner has this id.")
    def get(self, args, partner_id):
        """A partner's deliveries, the most recently recorded first or by `sort`, by period or contract."""
        return deliveries.list_deliveries(read_uow(), partner_id, **args)

    @requires("partners:write")
    @idempotent(IdempotencyRecord)
    @partners_blp.arguments(DeliveryInSchema)
    @partners_blp.response(201, DeliverySchema)
    @partners_blp.alt_response(200, schema=DeliverySchema,
                               description="This order was already recorded with the same values.")
    @partners_blp.alt_response(404, description="No partner has this id.")
    @partners_blp.alt_response(409, description="This order was already recorded with other values.")
    @partners_blp.doc(parameters=[HEADER_PARAMETER])
    def post(self, data, partner_id):
        """Record a delivery (one order); publishes crm.delivery.recorded."""
        delivery, created = deliveries.record_delivery(uow(), partner_id, data,
                                                       recorded_by=current_principal().key_id)
        shown = record_or_receipt(READ_SCOPE, delivery, id=delivery.id)
        location = {"Location": f"{partners_blp.url_prefix}/{partner_id}/deliveries/{delivery.id}"}
        return shown, 201 if created else 200, location


@partners_blp.route("/<uuid:partner_id>/deliveries/<uuid:delivery_id>")
class PartnerDeliveryById(MethodView):
    @requires("partners:read")
    @partners_blp.response(200, DeliverySchema)
    @partners_blp.alt_response(404, description="The partner has no delivery with this id.")
    def get(self, partner_id, delivery_id):
        """One delivery of a partner."""
        return deliveries.get_delivery(read_uow(), partner_id, delivery_id)


@partners_blp.route("/<uuid:partner_id>/scorecard")
class PartnerScorecard(MethodView):
    @requires("partners:read")
    @partners_blp.arguments(ScorecardQuerySchema, location="query")
    @partners_blp.response(200, ScorecardSchema)
    @partners_blp.alt_response(404, description="No partner has this id.")
    def get(self, args, partner_id):
        """A partner's scorecard for one period (default the current quarter), from the deliveries promised in it."""
        return scorecards.scorecard(read_uow(), partner_id, _period(args), **_scoring())


@partners_blp.route("/<uuid:partner_id>/scorecard/trend")
class PartnerScorecardTrend(MethodView):
    @requires("partners:read")
    @partners_blp.arguments(TrendQuerySchema, location="query")
    @partners_blp.response(200, TrendSchema)
    @partners_blp.alt_response(404, description="No partner has this id.")
    def get(self, args, partner_id):
        """A partner's scorecards over consecutive periods, oldest first (`periods` up to `to`, or `from`-`to`)."""
        return scorecards.trend(read_uow(), partner_id, _trend_periods(args), **_scoring())


# -- /api/v1/partner-portal ----------------------------------------------------------------------------------

@portal_blp.route("/deliveries")
class PortalDeliveries(MethodView):
    @requires(kind="partner")
    @portal_blp.arguments(DeliveryQuerySchema, location="query")
    @portal_blp.response(200, PortalDeliveryPageSchema)
    def get(self, args):
        """The calling partner's deliveries, the most recently recorded first or by `sort`."""
        return deliveries.list_own_deliveries(read_uow(), _caller_partner_id(), **args)


@portal_blp.route("/deliveries/<uuid:delivery_id>")
class PortalDeliveryById(MethodView):
    @requires(kind="partner")
    @portal_blp.response(200, PortalDeliverySchema)
    @portal_blp.alt_response(404, description="The calling partner has no delivery with this id.")
    def get(self, delivery_id):
        """One of the calling partner's deliveries."""
        return deliveries.get_own_delivery(read_uow(), _caller_partner_id(), delivery_id)


@portal_blp.route("/scorecard")
class PortalScorecard(MethodView):
    @requires(kind="partner")
    @portal_blp.arguments(ScorecardQuerySchema, location="query")
    @portal_blp.response(200, ScorecardSchema)
    def get(self, args):
        """The calling partner's scorecard for one period (default the current quarter)."""
        return scorecards.own_scorecard(read_uow(), _caller_partner_id(), _period(args), **_scoring())


@portal_blp.route("/scorecard/trend")
class PortalScorecardTrend(MethodView):
    @requires(kind="partner")
    @portal_blp.arguments(TrendQuerySchema, location="query")
    @portal_blp.response(200, TrendSchema)
    def get(self, args):
        """The calling partner's scorecards over consecutive periods, oldest first."""
        return scorecards.own_trend(read_uow(), _caller_partner_id(), _trend_periods(args), **_scoring())
