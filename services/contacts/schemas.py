"""Request and response schemas of the contacts API."""
from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from services.common.emails import validate_email
from services.common.pagination import PageArgs
from services.common.schemas import PHONE, Trimmed, TrimmedEmail

from .models import EMAIL_MAX, MONEY_PLACES, NAME_MAX, ORG_MAX, PHONE_MAX

QUERY_MAX = 200


def _text(max_len: int, **kw) -> Trimmed:
    # Blank text is refused rather than stored; send null to clear a field.
    return Trimmed(validate=validate.Length(min=1, max=max_len), allow_none=True, **kw)


class _ContactFields(Schema):
    class Meta:
        unknown = RAISE  # a misspelt field is an error the caller must see, not silently dropped data

    first_name = _text(NAME_MAX)
    last_name = _text(NAME_MAX)
    company = _text(ORG_MAX)
    job_title = _text(ORG_MAX)
    phone = Trimmed(validate=[validate.Length(max=PHONE_MAX), PHONE], allow_none=True)


class ContactCreateSchema(_ContactFields):
    email = TrimmedEmail(required=True, validate=[validate.Length(max=EMAIL_MAX), validate_email])


class ContactUpdateSchema(_ContactFields):
    email = TrimmedEmail(validate=[validate.Length(max=EMAIL_MAX), validate_email])


class ContactQuerySchema(PageArgs):
    email = Trimmed(validate=[validate.Length(max=EMAIL_MAX), validate_email],
                    metadata={"description": "Exact e-mail match after normalisation (case, width, IDNA domain)."})
    q = Trimmed(validate=validate.Length(max=QUERY_MAX),
                metadata={"description": "Case-insensitive substring of the name, e-mail or company."})


class ContactSchema(Schema):
    id = fields.UUID()
    email = fields.String()
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    company = fields.String(allow_none=True)
    job_title = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    origin_lead_id = fields.UUID(allow_none=True)
    account_id = fields.UUID(allow_none=True, metadata={"description": "The account (company) the person belongs to."})
    tags = fields.List(fields.String(), metadata={"description": "Sorted, lower-case."})
    attributes = fields.Dict(keys=fields.String(), metadata={
        "description": "Custom attribute values by name, typed by their definitions (`/api/v1/contacts/attributes`)."})
    consents = fields.Dict(keys=fields.String(), metadata={
        "description": "Current consent per `channel:purpose`, e.g. `email:marketing`: status, occurred_at, source, "
                       "text_version."})
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    version = fields.Integer()


class SpendSchema(Schema):
    currency = fields.String(metadata={"description": "ISO 4217 code."})
    amount = fields.Decimal(as_string=True, places=MONEY_PLACES,
                            metadata={"description": "The exact total as a decimal string, e.g. \"123.4500\"."})
    count = fields.Integer(metadata={"description": "Purchases in this currency."})


class PurchasesSchema(Schema):
    count = fields.Integer(metadata={"description": "Purchases counted, in every currency."})
    first_purchase_at = fields.AwareDateTime(allow_none=True)
    last_purchase_at = fields.AwareDateTime(allow_none=True)
    total_spend = fields.List(fields.Nested(SpendSchema),
                              metadata={"description": "One entry per currency, by currency code."})


class ContactDetailSchema(ContactSchema):
    purchases = fields.Nested(PurchasesSchema, metadata={
        "description": "Purchase metrics from `crm.purchase.recorded`; zero and empty when there are none."})


class ContactPageSchema(Schema):
    items = fields.List(fields.Nested(ContactSchema))
    next_cursor = fields.String(allow_none=True)
