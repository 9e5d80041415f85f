"""Request and response schemas of the contacts API."""
from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, pre_load, validate, validates_schema

from services.common.catalog import CONSENT_CHANNELS, CONSENT_PURPOSES
from services.common.emails import validate_email
from services.common.pagination import PageArgs, sort_field
from services.common.schemas import PHONE, DictDump, Trimmed, TrimmedEmail

from .analytics.contact_measures import FILTER_VOCABULARY
from .attributes import DEFINITIONS_MAX, at_most_definitions, attribute_filter_args, without_attribute_filters
from .filters import SORT_COLUMNS
from .models import CONTACT_STATUSES, EMAIL_MAX, MONEY_PLACES, NAME_MAX, ORG_MAX, PHONE_MAX
from .tags import TAG_RULE, Tag, Tags

QUERY_MAX = 200
CLV_BOUND = 10**14  # beyond any NUMERIC(18, 4) amount: a larger bound is a typo, not a filter
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
    status = fields.String(validate=validate.OneOf(CONTACT_STATUSES), metadata={
        "description": "Only active contacts, or only those terminated (an accepted termination recommendation)."})
    tag = fields.List(Tag(), validate=validate.Length(max=10), metadata={
        "description": "Only contacts with this tag; repeat it for contacts with all of them (`?tag=vip&tag=b2b`)."})

    abc_class = fields.List(fields.String(validate=validate.OneOf(FILTER_VOCABULARY["abc_class"])), metadata={
        "description": "Only contacts of this ABC class in the base currency's current analytics snapshot; repeat it "
                       "for any of several (`?abc_class=A&abc_class=B`). The same for the four below."})
    rfm_segment = fields.List(fields.String(validate=validate.OneOf(FILTER_VOCABULARY["rfm_segment"])))
    quadrant = fields.List(fields.String(validate=validate.OneOf(FILTER_VOCABULARY["quadrant"])), metadata={
        "description": "Profitability matrix quadrant."})
    pyramid_level = fields.List(fields.String(validate=validate.OneOf(FILTER_VOCABULARY["pyramid_level"])))
    stage = fields.List(fields.String(validate=validate.OneOf(FILTER_VOCABULARY["stage"])), metadata={
        "description": "Lifecycle stage."})
    # Bounds checked below, not by validate.Range: the OpenAPI document would show a Decimal bound as a string.
    clv_min = fields.Decimal(metadata={
        "description": "Only contacts whose lifetime value (base currency, current snapshot) is at least this."})
    clv_max = fields.Decimal(metadata={
        "description": "Only contacts whose lifetime value is at most this."})

    @validates_schema
    def _clv_range(self, data, **_kw):
        errors = {name: [f"Must be between -{CLV_BOUND} and {CLV_BOUND}."] for name in ("clv_min", "clv_max")
                  if data.get(name) is not None and abs(data[name]) > CLV_BOUND}
        if errors:
            raise ValidationError(errors)
        if data.get("clv_min") is not None and data.get("clv_max") is not None and data["clv_min"] > data["clv_max"]:
            raise ValidationError("Must not be below clv_min.", "clv_max")

    # `?attr.<name>=<value>` (custom attributes) are not fields: collected apart, typed by their definitions later.
    @pre_load
    def _without_attribute_filters(self, data, **_kw):
        return without_attribute_filters(data)

    @post_load(pass_original=True)
    def _with_attribute_filters(self, data, original, **_kw):
        attr = attribute_filter_args(original)
        return {**data, "attr": attr} if attr else data


class ContactSchema(DictDump):
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
    status = fields.String(metadata={
        "description": "`active`, or `terminated` once an operator accepted a termination recommendation for it "
                       "(docs/api-contacts.md, 'Termination evidence')."})
    terminated_at = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    version = fields.Integer()


def _money(description: str) -> fields.Decimal:
    return fields.Decimal(as_string=True, places=MONEY_PLACES, metadata={"description": description})


class SpendSchema(DictDump):
    currency = fields.String(metadata={"description": "ISO 4217 code."})
    amount = _money("The exact total of the purchases (gross: returns not taken off), e.g. \"123.4500\".")
    count = fields.Integer(metadata={"description": "Purchases in this currency."})
    returned = _money("What returns of these purchases gave back (`crm.purchase.returned`).")
    net = _money("amount - returned.")
    margin = _money("The purchases' margins less the margins their returns gave back; purchases without a margin "
                    "add nothing.")
    discount = _money("The purchases' discounts.")


class PurchasesSchema(DictDump):
    count = fields.Integer(metadata={"description": "Purchases counted, in every currency."})
    first_purchase_at = fields.AwareDateTime(allow_none=True)
    last_purchase_at = fields.AwareDateTime(allow_none=True)
    total_spend = fields.List(fields.Nested(SpendSchema),
                              metadata={"description": "One entry per currency, by currency code."})


def _nullable_money(description: str) -> fields.Decimal:
    return fields.Decimal(as_string=True, places=MONEY_PLACES, allow_none=True, metadata={"description": description})


class ContactAnalyticsSchema(DictDump):
    currency = fields.String(metadata={"description": "The snapshot's currency: the base currency."})
    snapshot_id = fields.UUID(metadata={"description": "The refresh that computed these measures."})
    as_of = fields.AwareDateTime(metadata={"description": "The instant the measures describe."})
    abc_class = fields.String(allow_none=True)
    recency_score = fields.Integer(allow_none=True)
    frequency_score = fields.Integer(allow_none=True)
    monetary_score = fields.Integer(allow_none=True)
    rfm_segment = fields.String(allow_none=True)
    clv = _nullable_money("Lifetime value: historical margin + predicted margin - cost to serve; null for a prospect.")
    predicted_margin = _nullable_money("The discounted margin still expected; null for a prospect.")
    historical_margin = _nullable_money("Margin of every purchase before as_of, less returns.")
    cost_to_serve = _nullable_money("Interactions before as_of weighted by their cost per kind.")
    current_profit = _nullable_money("Margin minus cost to serve in the window; null for a prospect.")
    quadrant = fields.String(allow_none=True, metadata={"description": "best, invest, hold or worst."})
    pyramid_level = fields.String(allow_none=True)
    stage = fields.String(allow_none=True, metadata={"description": "Lifecycle stage."})


class ContactDetailSchema(ContactSchema):
    purchases = fields.Nested(PurchasesSchema, metadata={
        "description": "Purchase metrics from `crm.purchase.recorded` and `crm.purchase.returned`; zero and empty "
                       "when there are none."})
    analytics = fields.Nested(ContactAnalyticsSchema, allow_none=True, metadata={
        "description": "The contact's measures in the base currency's current analytics snapshot "
                       "(docs/api-analytics.md); null before the first snapshot and for a contact created since."})


class ContactPageSchema(Schema):
    items = fields.List(fields.Nested(ContactSchema))
    next_cursor = fields.String(allow_none=True)
