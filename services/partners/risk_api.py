"""HTTP entrypoint for a partner's risk; the snapshot and the assessment are in risk.py.

The route sits on the partners blueprint (internal keys, `partners:read`). The answer is computed on request
from the partner's history and the loaded `crm_assess_partner_risk` plugins; a plugin that fails is named
under `degraded` and the others still count, as with lead scoring.
"""
from __future__ import annotations

from flask.views import MethodView
from marshmallow import RAISE, Schema, fields

from services.common.identity import requires
from services.common.schemas import DegradedSchema
from services.common.web import read_uow, runtime

from . import risk
from .api import partners_blp
from .service import READ_SCOPE


class RiskQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    as_of = fields.Date(load_default=None, metadata={
        "description": "The day to assess (ISO date); default today (UTC). It anchors the delivery months and "
                       "the 12 months of spend; disputes and contracts are taken as they stand."})


class RiskFactorSchema(Schema):
    """One plugin's risk factor, with the evidence behind it."""

    plugin = fields.String(metadata={"description": "The plugin that gave the factor, e.g. `builtin.partner_risk`."})
    code = fields.String()
    weight = fields.Integer(metadata={"description": "Risk points, within ±100; negative lowers the risk."})
    reason = fields.String()


class RiskSchema(Schema):
    partner_id = fields.UUID()
    as_of = fields.Date()
    score = fields.Integer(metadata={"description": "The factors' weights added up, clamped to 0..100."})
    level = fields.String(metadata={"description": "`low` below 30, `medium` from 30, `high` from 60."})
    factors = fields.List(fields.Nested(RiskFactorSchema))
    degraded = fields.List(fields.Nested(DegradedSchema), metadata={
        "description": "Plugins whose contribution is missing (raised, malformed, too slow); empty when none."})


@partners_blp.route("/<uuid:partner_id>/risk")
class PartnerRisk(MethodView):
    @requires(READ_SCOPE)
    @partners_blp.arguments(RiskQuerySchema, location="query")
    @partners_blp.response(200, RiskSchema)
    @partners_blp.alt_response(404, description="No partner has this id.")
    def get(self, args, partner_id):
        """A partner's risk: score, level and every factor with the plugin behind it."""
        return risk.assess_partner_risk(read_uow(), partner_id, plugins=runtime().plugins, as_of=args["as_of"])
