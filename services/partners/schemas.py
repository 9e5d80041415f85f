"""Request and response schemas of the partners API and the partner portal."""
from __future__ import annotations

from decimal import Decimal

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.common.pagination import PageArgs, sort_field
from services.common.schemas import CURRENCY, ExactDecimal, TrimmedInput

from . import periods, rules
from .models import CONTRACT_SORTS, PARTNER_SORTS, PARTNER_STATUSES, PARTNER_TYPES, TERMS_SORTS

_COUNTRY = validate.Regexp(r"^[A-Z]{2}$", error="Use a two-letter ISO 3166 code in capitals, such as DE.")
_MAX_VOLUME = Decimal("999999999999.999")  # fits NUMERIC(15, 3)


def _days(maximum: int, **kw) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=0, max=maximum), **kw)


def _percent(**kw) -> ExactDecimal:
    # The kit's exact decimal: a percentage never passes through a float; a JSON number is taken as it reads.
    return ExactDecimal(2, Decimal(100), **kw)


def _volume(**kw) -> ExactDecimal:
    return ExactDecimal(3, _MAX_VOLUME, **kw)


# -- terms -------------------------------------------------------------------------------------------------

class _TermsRules(TrimmedInput):
    @validates_schema
    def _hold_together(self, data, **_kw):
        errors = rules.terms_errors(data)
        if errors:
            raise ValidationError(errors)


class TermsSchema(_TermsRules):
    """A complete set of contract terms (creating a contract, or replacing its terms with PUT)."""

    payment_terms_days = _days(365, required=True, metadata={"description": "Net days to pay, e.g. 30 for net 30."})
    discount_percent = _percent(required=True, metadata={"description": "0 to 100, at most 2 decimal places."})
    delivery_lead_time_days = _days(365, required=True)
    minimum_order_volume = _volume(required=True, metadata={"description": "In `currency`, at most 3 decimal places."})
    currency = fields.String(required=True, validate=CURRENCY)
    effective_from = fields.Date(required=True)
    effective_to = fields.Date(allow_none=True, load_default=None,
                               metadata={"description": "After effective_from; null for an open-ended contract."})
    auto_renew = fields.Boolean(load_default=False)
    notice_period_days = _days(730, load_default=0)


class TermsChangeSchema(_TermsRules):
    """Some terms to change (POST); the others are carried over from the version in force."""

    payment_terms_days = _days(365)
    discount_percent = _percent()
    delivery_lead_time_days = _days(365)
    minimum_order_volume = _volume()
    currency = fields.String(validate=CURRENCY)
    effective_from = fields.Date()
    effective_to = fields.Date(allow_none=True)
    auto_renew = fields.Boolean()
    notice_period_days = _days(730)

    @validates_schema
    def _not_empty(self, data, **_kw):
        if not data:
            raise ValidationError("Name at least one term to change.")


class PortalTermsVersionSchema(TermsSchema):
    """One version of the terms as a partner sees it."""

    version = fields.Integer()
    created_at = fields.AwareDateTime()


class TermsVersionSchema(PortalTermsVersionSchema):
    """One version of the terms, with the API key that made it."""

    changed_by = fields.String(allow_none=True)


class PortalTermsHistorySchema(Schema):
    contract_id = fields.UUID()
    current_version = fields.Integer()
    items = fields.List(fields.Nested(PortalTermsVersionSchema),
                        metadata={"description": "Newest version first, or in the order `sort` asks for."})
    next_cursor = fields.String(allow_none=True)


class TermsHistorySchema(PortalTermsHistorySchema):
    items = fields.List(fields.Nested(TermsVersionSchema),
                        metadata={"description": "Newest version first, or in the order `sort` asks for."})


class TermsQuerySchema(PageArgs):
    sort = sort_field(*TERMS_SORTS, default=None)  # no sort: newest version first, as before sort= existed


# -- contracts ---------------------------------------------------------------------------------------------

class ContractCreateSchema(TrimmedInput):
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    terms = fields.Nested(TermsSchema, required=True)


class PortalContractSchema(Schema):
    id = fields.UUID()
    partner_id = fields.UUID()
    title = fields.String()
    terms_version = fields.Integer(attribute="current_version")
    terms = fields.Nested(PortalTermsVersionSchema, metadata={"description": "The terms in force."})
    notice_deadline = fields.Date(allow_none=True, metadata={
        "description": "The terms' effective_to less notice_period_days: from this day on the contract is "
                       "in its notice period; null for an open-ended contract."})
    state = fields.String(validate=validate.OneOf(periods.STATES), metadata={
        "description": "active; in_notice from the notice deadline on; expired from effective_to on (until "
                       "an auto-renewal makes the next period)."})
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class ContractSchema(PortalContractSchema):
    terms = fields.Nested(TermsVersionSchema, metadata={"description": "The terms in force."})


class ContractQuerySchema(PageArgs):
    sort = sort_field(*CONTRACT_SORTS, default=None)  # no sort: newest first, as before sort= existed


class ContractPageSchema(Schema):
    items = fields.List(fields.Nested(ContractSchema))
    next_cursor = fields.String(allow_none=True)


class PortalContractPageSchema(Schema):
    items = fields.List(fields.Nested(PortalContractSchema))
    next_cursor = fields.String(allow_none=True)


# -- partners ----------------------------------------------------------------------------------------------

class PartnerCreateSchema(TrimmedInput):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    type = fields.String(required=True, validate=validate.OneOf(PARTNER_TYPES))
    status = fields.String(load_default="prospect", validate=validate.OneOf(rules.INITIAL_STATUSES))
    country = fields.String(allow_none=True, load_default=None, validate=_COUNTRY)


class PartnerUpdateSchema(TrimmedInput):
    name = fields.String(validate=validate.Length(min=1, max=200))
    type = fields.String(validate=validate.OneOf(PARTNER_TYPES))
    status = fields.String(validate=validate.OneOf(PARTNER_STATUSES))
    country = fields.String(allow_none=True, validate=_COUNTRY)


class PartnerQuerySchema(PageArgs):
    type = fields.String(validate=validate.OneOf(PARTNER_TYPES))
    status = fields.String(validate=validate.OneOf(PARTNER_STATUSES))
    q = fields.String(validate=validate.Length(min=1, max=200),
                      metadata={"description": "Part of the partner's name, case-insensitive."})
    sort = sort_field(*PARTNER_SORTS, default=None)  # no sort: newest first, as before sort= existed


class PartnerSchema(Schema):
    id = fields.UUID()
    name = fields.String()
    type = fields.String()
    status = fields.String()
    country = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class PartnerPageSchema(Schema):
    items = fields.List(fields.Nested(PartnerSchema))
    next_cursor = fields.String(allow_none=True)
