"""Request and response schemas of the contacts API."""
from __future__ import annotations

from marshmallow import RAISE, Schema, fields, post_load, pre_load, validate

from services.common.catalog import CONSENT_CHANNELS, CONSENT_PURPOSES
from services.common.emails import validate_email
from services.common.pagination import PageArgs, sort_field
from services.common.schemas import PHONE, Trimmed, TrimmedEmail

from .attributes import DEFINITIONS_MAX, at_most_definitions, attribute_filter_args, without_attribute_filters
from .filters import SORT_COLUMNS
from .models import EMAIL_MAX, MONEY_PLACES, NAME_MAX, ORG_MAX, PHONE_MAX
from .tags import TAG_RULE, Tag, Tags

QUERY_MAX = 200
CONSENT_KEYS = [f"{channel}:{purpose}" for channel in CONSENT_CHANNELS for purpose in CONSENT_PURPOSES]


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
    account_id = fields.UUID(allow_none=True, metadata={
        "description": "The account (company) the person belongs to, null for none. Left out on create: the account "
                       "whose domain is the e-mail's, if there is one (never for free mail)."})
    tags = Tags(metadata={"description": f"The contact's tags (replaces them all on PATCH). {TAG_RULE} At most 100."})
    attributes = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True),
                             validate=at_most_definitions, metadata={"maxProperties": DEFINITIONS_MAX,
        "description": "Custom attribute values by name, typed by their definitions; on PATCH only the names sent "
                       "change, and null removes a value."})


class ContactCreateSchema(_ContactFields):
    email = TrimmedEmail(required=True, validate=[validate.Length(max=EMAIL_MAX), validate_email])


class ContactUpdateSchema(_ContactFields):
    email = TrimmedEmail(validate=[validate.Length(max=EMAIL_MAX), validate_email])


class ContactQuerySchema(PageArgs):
    email = Trimmed(validate=[validate.Length(max=EMAIL_MAX), validate_email],
                    metadata={"description": "Exact e-mail match after normalisation (case, width, IDNA domain)."})
    q = Trimmed(validate=validate.Length(max=QUERY_MAX),
                metadata={"description": "Case-insensitive substring of the name, e-mail or company."})
    consent = fields.String(validate=validate.OneOf(CONSENT_KEYS), metadata={
        "description": "Only contacts whose current consent for this `channel:purpose` is granted."})
    sort = sort_field(*SORT_COLUMNS, default=None)  # no sort: newest first, as before sort= existed
    account_id = fields.UUID(metadata={"description": "Only the contacts of this account."})
    tag = fields.List(Tag(), validate=validate.Length(max=10), metadata={
        "description": "Only contacts with this tag; repeat it for contacts with all of them (`?tag=vip&tag=b2b`)."})

    # `?attr.<name>=<value>` (custom attributes) are not fields: collected apart, typed by their definitions later.
    @pre_load
    def _without_attribute_filters(self, data, **_kw):
        return without_attribute_filters(data)

    @post_load(pass_original=True)
    def _with_attribute_filters(self, data, original, **_kw):
        attr = attribute_filter_args(original)
        return {**data, "attr": attr} if attr else data


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
        "description": "Current consent per `channel:purpose` (channels email, sms, phone, post, push; purposes "
                       "marketing, service), e.g. `{\"email:marketing\": {\"status\": \"granted\", \"occurred_at\": "
                       "\"2026-03-01T09:30:00+00:00\", \"source\": \"web-form\", \"text_version\": \"v3\"}}`. "
                       "Only pairs ever recorded appear. The newest statement by `occurred_at` is current; at equal "
                       "times a withdrawal wins. History: `/api/v1/contacts/{id}/consents`."})
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    version = fields.Integer()


def _money(description: str) -> fields.Decimal:
    return fields.Decimal(as_string=True, places=MONEY_PLACES, metadata={"description": description})


class SpendSchema(Schema):
    currency = fields.String(metadata={"description": "ISO 4217 code."})
    amount = _money("The exact total of the purchases (gross: returns not taken off), e.g. \"123.4500\".")
    count = fields.Integer(metadata={"description": "Purchases in this currency."})
    returned = _money("What returns of these purchases gave back (`crm.purchase.returned`).")
    net = _money("amount - returned.")
    margin = _money("The purchases' margins less the margins their returns gave back; purchases without a margin "
                    "add nothing.")
    discount = _money("The purchases' discounts.")


class PurchasesSchema(Schema):
    count = fields.Integer(metadata={"description": "Purchases counted, in every currency."})
    first_purchase_at = fields.AwareDateTime(allow_none=True)
    last_purchase_at = fields.AwareDateTime(allow_none=True)
    total_spend = fields.List(fields.Nested(SpendSchema),
                              metadata={"description": "One entry per currency, by currency code."})


class ContactDetailSchema(ContactSchema):
    purchases = fields.Nested(PurchasesSchema, metadata={
        "description": "Purchase metrics from `crm.purchase.recorded` and `crm.purchase.returned`; zero and empty "
                       "when there are none."})


class ContactPageSchema(Schema):
    items = fields.List(fields.Nested(ContactSchema))
    next_cursor = fields.String(allow_none=True)
