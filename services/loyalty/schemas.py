"""Request and response schemas of the loyalty API."""
from __future__ import annotations

from datetime import timezone
from decimal import Decimal, InvalidOperation

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.common.pagination import PageArgs, sort_field
from services.common.schemas import (
    CURRENCY,
    SLUG,
    DegradedSchema,
    ExactDecimal,
    Moment,
    ScoreFactorSchema,
    TrimmedInput,
)

from .models import ENTRY_KINDS, MEMBER_SORTS, PROGRAM_SORTS, TRANSACTION_SORTS

MAX_AMOUNT = Decimal(1000000000000)  # 10**12 per purchase; far above any till, far below the column's limit
MAX_RATE = Decimal(1000)
MAX_POINTS = 10**15
DECIMAL_PLACES = 4  # what Numeric(18, 4) keeps


def _decimal(maximum: Decimal, **kwargs) -> ExactDecimal:
    """A number in a request: a decimal string from 0 to `maximum`, at most 4 places; a JSON number is refused."""
    return ExactDecimal(DECIMAL_PLACES, maximum, strings_only=True, **kwargs)


class DecimalString(fields.Decimal):
    """An exact decimal in a response, as a JSON string ("12.50"), never a float: at least `min_places` decimals,
    further trailing zeros dropped, no exponent. Requests take `_decimal` (the kit's ExactDecimal) instead."""

    def __init__(self, *, min_places: int = 0, **kwargs):
        super().__init__(as_string=True, allow_nan=False, **kwargs)
        self.min_places = min_places

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return plain_decimal(Decimal(value), self.min_places)


def plain_decimal(value: Decimal, min_places: int = 0) -> str:
    """12.5000 -> '12.50' (min_places=2), 1.0000 -> '1' (min_places=0): exact, no exponent, no float."""
    try:
        quantized = value.quantize(Decimal(1).scaleb(-DECIMAL_PLACES))
    except InvalidOperation:
        quantized = value
    text = format(quantized.normalize(), "f")
    whole, _, frac = text.partition(".")
    frac = frac.ljust(min_places, "0")
    return f"{whole}.{frac}" if frac else whole


class UTCDateTime(fields.AwareDateTime):
    """A timezone-aware timestamp, always written in UTC so one instant always reads the same."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return super()._serialize(value.astimezone(timezone.utc), attr, obj, **kwargs)


def _reason(**kw):
    return fields.String(validate=validate.Length(min=1, max=500), **kw)


def _margin_rate(**kw):
    return _decimal(Decimal(1), metadata={
        "description": "The share of a purchase's amount taken as its margin when the purchase gives none "
                       "(0-1, e.g. \"0.3\"); null: such purchases have no margin."}, **kw)


def _money(*, description: str, **kw):
    return _decimal(MAX_AMOUNT, max_inclusive=False, range_error="Must be 0 or more and less than 10^12.",
                    metadata={"description": description}, **kw)


def _amount(**kw):
    return _decimal(MAX_AMOUNT, min_inclusive=False, max_inclusive=False,
                    range_error="Must be greater than 0 and less than 10^12.", required=True, **kw)


def _not_above_amount(data: dict, name: str) -> None:
    """422 naming `name` when it is larger than the body's amount (both valid on their own)."""
    value, amount = data.get(name), data.get("amount")
    if value is not None and amount is not None and value > amount:
        raise ValidationError({name: ["Must not be more than the amount."]})


# --- programs -----------------------------------------------------------------------------------------------

class ProgramSchema(Schema):
    id = fields.UUID()
    code = fields.String()
    name = fields.String()
    currency = fields.String()
    points_per_unit = DecimalString()
    margin_rate = DecimalString(allow_none=True)
    auto_enrol = fields.Boolean()
    is_default = fields.Boolean()
    created_at = UTCDateTime()
    updated_at = UTCDateTime()


class ProgramCreateSchema(TrimmedInput):
    code = fields.String(required=True, validate=SLUG)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    currency = fields.String(required=True, validate=CURRENCY)
    points_per_unit = _decimal(MAX_RATE, required=True)
    margin_rate = _margin_rate(load_default=None, allow_none=True)
    auto_enrol = fields.Boolean(load_default=False)


class ProgramUpdateSchema(TrimmedInput):
    name = fields.String(validate=validate.Length(min=1, max=200))
    points_per_unit = _decimal(MAX_RATE)
    margin_rate = _margin_rate(allow_none=True)
    auto_enrol = fields.Boolean()


class ProgramQuerySchema(PageArgs):
    sort = sort_field(*PROGRAM_SORTS, default=None)  # no sort: newest first, as before sort= existed


class ProgramPageSchema(Schema):
    items = fields.List(fields.Nested(ProgramSchema))
    next_cursor = fields.String(allow_none=True)


# --- members ------------------------------------------------------------------------------------------------

class MemberCreateSchema(Schema):
    contact_id = fields.UUID(required=True)
    program_id = fields.UUID(load_default=None, metadata={"description": "Defaults to the default program."})


class MemberSchema(Schema):
    id = fields.UUID()
    program_id = fields.UUID()
    contact_id = fields.UUID()
    balance = fields.Integer(metadata={"description": "Points available: the sum of the member's ledger."})
    lifetime_points = fields.Integer(metadata={"description": "Points ever earned, net of reversed earns."})
    tier = fields.String(allow_none=True, metadata={"description": "Placeholder: null until tiers ship."})
    enrolled_via = fields.String()
    enrolled_at = UTCDateTime()
    merged_into_id = fields.UUID(allow_none=True, metadata={
        "description": "Set when the membership was closed by a contact merge: the membership its points and "
                       "purchases moved to."})
    status = fields.String(metadata={"description": "`active`, or `frozen` once its contact was terminated: "
                                                    "purchases earn no points and redemptions are refused."})
    frozen_at = UTCDateTime(allow_none=True, metadata={"description": "When the contact was terminated; null: active."})
    frozen_reason = fields.String(allow_none=True, metadata={"description": "The termination's reason."})


class MemberQuerySchema(PageArgs):
    contact_id = fields.UUID()
    program_id = fields.UUID()
    sort = sort_field(*MEMBER_SORTS, default=None)  # no sort: newest first, as before sort= existed


class MemberPageSchema(Schema):
    items = fields.List(fields.Nested(MemberSchema))
    next_cursor = fields.String(allow_none=True)


# --- ledger -------------------------------------------------------------------------------------------------

class TransactionSchema(Schema):
    id = fields.UUID()
    member_id = fields.UUID()
    kind = fields.String()
    points = fields.Integer(metadata={"description": "Signed: positive adds to the balance, negative takes away."})
    balance_after = fields.Integer()
    reason = fields.String(allow_none=True)
    purchase_id = fields.UUID(allow_none=True)
    reverses_id = fields.UUID(allow_none=True)
    factors = fields.List(fields.Nested(ScoreFactorSchema))
    degraded = fields.List(fields.Nested(DegradedSchema))
    created_at = UTCDateTime()


class TransactionQuerySchema(PageArgs):
    kind = fields.String(validate=validate.OneOf(ENTRY_KINDS))
    sort = sort_field(*TRANSACTION_SORTS, default=None)  # no sort: newest first, as before sort= existed


class TransactionPageSchema(Schema):
    items = fields.List(fields.Nested(TransactionSchema))
    next_cursor = fields.String(allow_none=True)


class RedemptionCreateSchema(TrimmedInput):
    points = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_POINTS))
    reason = _reason(load_default=None, allow_none=True)


class AdjustmentCreateSchema(TrimmedInput):
    points = fields.Integer(required=True, strict=True, validate=[
        validate.Range(min=-MAX_POINTS, max=MAX_POINTS),
        validate.NoneOf([0], error="An adjustment must change the balance."),
    ])
    reason = _reason(required=True)


class ReversalCreateSchema(TrimmedInput):
    reason = _reason(required=True)


# --- purchases ----------------------------------------------------------------------------------------------

class PurchaseCreateSchema(TrimmedInput):
    member_id = fields.UUID(load_default=None)
    contact_id = fields.UUID(load_default=None)
    program_id = fields.UUID(load_default=None, metadata={"description": "With contact_id; defaults to the default program."})
    amount = _amount()
    currency = fields.String(required=True, validate=CURRENCY)
    occurred_at = Moment(required=True)
    external_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=200),
                                metadata={"description": "The caller's receipt number: unique per program."})
    margin = _money(load_default=None, allow_none=True, description=(
        "What the business made on the purchase, in its currency, 0 to amount; left out: amount x the "
        "program's margin_rate (rounded half up to 4 places), or none when the program has no rate."))
    discount = _money(load_default=None, allow_none=True,
                      description="What the buyer was let off; `amount` is what they paid after it.")
    coupon_code = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=64),
                                metadata={"description": "The coupon the purchase was bought with, 1-64 characters "
                                                         "once trimmed; kept as written (case too)."})

    @validates_schema
    def _names_a_buyer(self, data, **_kw):
        if data.get("member_id") is None and data.get("contact_id") is None:
            message = "Give member_id or contact_id."
            raise ValidationError({"member_id": [message], "contact_id": [message]})

    @validates_schema
    def _margin_within_amount(self, data, **_kw):
        _not_above_amount(data, "margin")


class PurchaseSchema(Schema):
    id = fields.UUID()
    program_id = fields.UUID()
    member_id = fields.UUID()
    contact_id = fields.UUID()
    external_id = fields.String(allow_none=True)
    amount = DecimalString(min_places=2)
    currency = fields.String()
    occurred_at = UTCDateTime()
    points = fields.Integer()
    margin = DecimalString(min_places=2, allow_none=True)
    discount = DecimalString(min_places=2, allow_none=True)
    returned_amount = DecimalString(min_places=2, metadata={"description": "What its returns gave back so far."})
    coupon_code = fields.String(allow_none=True)
    frozen = fields.Boolean(metadata={"description": "Made on a frozen membership: recorded, but it earned 0 points."})
    transaction_id = fields.UUID(allow_none=True)
    balance_after = fields.Integer()
    factors = fields.List(fields.Nested(ScoreFactorSchema))
    degraded = fields.List(fields.Nested(DegradedSchema))
    created_at = UTCDateTime()


# --- returns ------------------------------------------------------------------------------------------------

class ReturnCreateSchema(TrimmedInput):
    amount = _amount(metadata={
        "description": "What is given back, in the purchase's currency; at most what is left to return."})
    margin = _money(load_default=None, allow_none=True, description=(
        "The margin given back with it, 0 to amount; left out: the purchase's margin in proportion (the "
        "return of the rest gives back the rest of the margin)."))
    reason = _reason(load_default=None, allow_none=True)
    occurred_at = Moment(required=True)

    @validates_schema
    def _margin_within_amount(self, data, **_kw):
        _not_above_amount(data, "margin")


class ReturnSchema(Schema):
    id = fields.UUID()
    purchase_id = fields.UUID()
    member_id = fields.UUID()
    contact_id = fields.UUID()
    program_id = fields.UUID()
    amount = DecimalString(min_places=2)
    margin = DecimalString(min_places=2, allow_none=True)
    currency = fields.String()
    reason = fields.String(allow_none=True)
    occurred_at = UTCDateTime()
    points = fields.Integer(metadata={"description": "Points taken back for the part returned."})
    points_unrecovered = fields.Integer(metadata={
        "description": "Points this return owed that could not be taken back: the member had spent them."})
    transaction_id = fields.UUID(allow_none=True, metadata={"description": "The `return` ledger entry; null for 0 points."})
    balance_after = fields.Integer()
    returned_amount = DecimalString(min_places=2, metadata={"description": "The purchase's returns so far, this one included."})
    returnable_amount = DecimalString(min_places=2, metadata={"description": "What is left of the purchase to return."})
    created_at = UTCDateTime()
