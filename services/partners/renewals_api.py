"""HTTP entrypoints for contract periods: the contract list (`?expiring_within=`) and the portal's notice deadlines.

The routes sit on api.py's blueprints: the list on `contracts_blp` (partners:read), the notices on `portal_blp`,
whose before-request check refuses a suspended or terminated partner; the partner id comes only from the
identity token. The dates and states are computed in periods.py, the queries in renewals.py.
"""
from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields

from services.common.identity import requires
from services.common.pagination import PageArgs, sort_field
from services.common.web import read_uow

from . import periods, renewals
from .api import _caller_partner_id, contracts_blp, portal_blp
from .schemas import ContractPageSchema


class DaysWindow(fields.String):
    """A window of whole days written `Nd`, N from 1 to 3650 (`60d`); loads as the number of days."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return periods.parse_window(text)
        except ValueError:
            raise ValidationError(f"Use whole days as Nd, N from 1 to {periods.MAX_WINDOW_DAYS}, "
                                  "such as 60d.") from None


class ContractListQuerySchema(PageArgs):
    expiring_within = DaysWindow(metadata={
        "description": "Only contracts whose terms in force end within this many days from today and have not "
                       "ended, as `Nd` (1 to 3650), e.g. `60d`; they come soonest end first unless `sort` is given."})
    partner_id = fields.UUID(metadata={"description": "Only this partner's contracts."})
    sort = sort_field(*renewals.EXPIRING_SORTS, default=None)


class NoticeQuerySchema(PageArgs):
    within = DaysWindow(load_default=renewals.DEFAULT_NOTICE_WINDOW, metadata={
        "description": "How far ahead to look for notice deadlines, as `Nd` (1 to 3650); default `90d`."})


class NoticeSchema(Schema):
    """One of the partner's contracts with its notice deadline."""

    contract_id = fields.UUID(attribute="id")
    title = fields.String()
    terms_version = fields.Integer(attribute="current_version")
    effective_to = fields.Date(attribute="terms.effective_to")
    notice_period_days = fields.Integer(attribute="terms.notice_period_days")
    auto_renew = fields.Boolean(attribute="terms.auto_renew")
    notice_deadline = fields.Date(metadata={"description": "effective_to less notice_period_days."})
    state = fields.String(metadata={"description": "active, or in_notice once the deadline has come."})


class NoticePageSchema(Schema):
    items = fields.List(fields.Nested(NoticeSchema), metadata={"description": "Soonest deadline first."})
    next_cursor = fields.String(allow_none=True)


@contracts_blp.route("")
class Contracts(MethodView):
    @requires("partners:read")
    @contracts_blp.arguments(ContractListQuerySchema, location="query")
    @contracts_blp.response(200, ContractPageSchema)
    def get(self, args):
        """List contracts with the terms in force, newest first or by `sort`; `expiring_within=60d`: ending soon."""
        return renewals.list_contracts(read_uow(), **args)


@portal_blp.route("/notices")
class PortalNotices(MethodView):
    @requires(kind="partner")
    @portal_blp.arguments(NoticeQuerySchema, location="query")
    @portal_blp.response(200, NoticePageSchema)
    def get(self, args):
        """The calling partner's contracts whose notice deadline is within `within` days (or has passed, while the
        terms have not ended), soonest deadline first."""
        return renewals.list_own_notices(read_uow(), _caller_partner_id(), **args)
