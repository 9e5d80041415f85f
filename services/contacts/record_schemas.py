"""Request and response schemas of accounts, tags and custom attribute definitions."""
from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from services.common.pagination import PageArgs, sort_field
from services.common.schemas import Trimmed

from .accounts import SORTS, normalize_domain
from .attributes import NAME, NAME_RULE, OPTION_MAX, OPTIONS_MAX, STRING_DEFAULT_MAX, STRING_MAX
from .models import (
    ACCOUNT_NAME_MAX,
    ADDRESS_LIMITS,
    ATTRIBUTE_DESCRIPTION_MAX,
    ATTRIBUTE_LABEL_MAX,
    ATTRIBUTE_TYPES,
    DOMAIN_MAX,
    INDUSTRY_MAX,
    OWNER_MAX,
    SIZE_BANDS,
)
from .schemas import QUERY_MAX, ContactPageSchema, PurchasesSchema
from .tags import TAG_RULE, Tag, Tags

# ISO 3166-1 alpha-2: the 249 officially assigned codes.
COUNTRIES = frozenset("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP
KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS
MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS
RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW
TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
""".split())


def _text(max_len: int, **kw) -> Trimmed:
    # Blank text is refused rather than stored; send null to clear a field.
    return Trimmed(validate=validate.Length(min=1, max=max_len), allow_none=True, **kw)


class Domain(Trimmed):
    """A company's domain: normalised to lower-case IDNA; free-mail domains refused unless `allow_free_mail`."""

    def __init__(self, *, allow_free_mail: bool = False, **kwargs):
        super().__init__(validate=validate.Length(max=DOMAIN_MAX), **kwargs)
        self.allow_free_mail = allow_free_mail

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return normalize_domain(super()._deserialize(value, attr, data, **kwargs),
                                    allow_free_mail=self.allow_free_mail)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class Country(Trimmed):
    """An ISO 3166-1 alpha-2 country code, upper-cased."""

    def _deserialize(self, value, attr, data, **kwargs):
        code = super()._deserialize(value, attr, data, **kwargs).upper()
        if code not in COUNTRIES:
            raise ValidationError("Not an ISO 3166-1 alpha-2 country code such as DE or US.")
        return code


# -- accounts -----------------------------------------------------------------------------------------------

class AddressSchema(Schema):
    class Meta:
        unknown = RAISE

    street = _text(ADDRESS_LIMITS["street"])
    city = _text(ADDRESS_LIMITS["city"])
    postal_code = _text(ADDRESS_LIMITS["postal_code"])
    region = _text(ADDRESS_LIMITS["region"], metadata={"description": "State, province or county."})
    country = Country(allow_none=True, metadata={"description": "ISO 3166-1 alpha-2 code, e.g. `DE`."})


class _AccountFields(Schema):
    class Meta:
        unknown = RAISE  # a misspelt field is an error the caller must see, not silently dropped data

    domain = Domain(allow_none=True, metadata={
        "description": "The company's domain, unique among accounts; stored lower-case in its IDNA form. New "
                       "contacts at this domain join the account. Free-mail domains are refused."})
    industry = _text(INDUSTRY_MAX)
    size_band = fields.String(allow_none=True, validate=validate.OneOf(SIZE_BANDS),
                              metadata={"description": "Head count band."})
    address = fields.Nested(AddressSchema, allow_none=True, metadata={
        "description": "On PATCH only the lines sent change; null clears the whole address."})
    owner = _text(OWNER_MAX, metadata={"description": "Who looks after the account: a user id or an e-mail."})
    tags = Tags(metadata={"description": f"{TAG_RULE} At most 100; replaces them all on PATCH."})


class AccountCreateSchema(_AccountFields):
    name = Trimmed(required=True, validate=validate.Length(min=1, max=ACCOUNT_NAME_MAX))


class AccountUpdateSchema(_AccountFields):
    name = Trimmed(validate=validate.Length(min=1, max=ACCOUNT_NAME_MAX))


class AccountQuerySchema(PageArgs):
    tag = fields.List(Tag(), validate=validate.Length(max=10), metadata={
        "description": "Only accounts with this tag; repeat it for accounts with all of them."})
    domain = Domain(allow_free_mail=True, metadata={"description": "Exact domain, after normalisation."})
    q = Trimmed(validate=validate.Length(max=QUERY_MAX),
                metadata={"description": "Case-insensitive substring of the name or the domain."})
    sort = sort_field(*SORTS, default=None)  # no sort: newest first


class AccountSchema(Schema):
    id = fields.UUID()
    name = fields.String()
    domain = fields.String(allow_none=True)
    industry = fields.String(allow_none=True)
    size_band = fields.String(allow_none=True)
    address = fields.Nested(AddressSchema)
    owner = fields.String(allow_none=True)
    tags = fields.List(fields.String(), metadata={"description": "Sorted, lower-case."})
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    version = fields.Integer()


class AccountDetailSchema(AccountSchema):
    contact_count = fields.Integer(metadata={"description": "Contacts that belong to the account."})
    purchases = fields.Nested(PurchasesSchema, metadata={
        "description": "The purchase metrics of all its contacts together: count, first and last purchase, spend "
                       "per currency."})
    contacts = fields.Nested(ContactPageSchema, metadata={
        "description": "The first page of its contacts, newest first; `next_cursor` continues at "
                       "`GET /api/v1/contacts?account_id=<id>&cursor=<next_cursor>`."})


class AccountPageSchema(Schema):
    items = fields.List(fields.Nested(AccountSchema))
    next_cursor = fields.String(allow_none=True)


# -- tags ---------------------------------------------------------------------------------------------------

class TagsSchema(Schema):
    class Meta:
        unknown = RAISE

    tags = Tags(required=True, validate=validate.Length(min=1), metadata={"description": f"Tags to add. {TAG_RULE}"})


# -- custom attribute definitions -------------------------------------------------------------------------------

class AttributeDefinitionCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Regexp(NAME.pattern + r"\Z", error=NAME_RULE),
                         metadata={"description": "How values are named: `attributes.<name>`, `?attr.<name>=`."})
    type = fields.String(required=True, validate=validate.OneOf(ATTRIBUTE_TYPES))
    label = _text(ATTRIBUTE_LABEL_MAX, metadata={"description": "A display name; the name when left out."})
    description = _text(ATTRIBUTE_DESCRIPTION_MAX)
    options = fields.List(Trimmed(validate=validate.Length(min=1, max=OPTION_MAX)),
                          validate=validate.Length(min=1, max=OPTIONS_MAX),
                          metadata={"description": f"An enum's allowed values (required for one): 1-{OPTIONS_MAX} "
                                                   f"unique strings of 1-{OPTION_MAX} characters."})
    max_length = fields.Integer(validate=validate.Range(min=1, max=STRING_MAX), metadata={
        "description": f"A string's longest value, default {STRING_DEFAULT_MAX}."})

    @validates_schema
    def _fits_the_type(self, data, **_kw):
        kind, options = data.get("type"), data.get("options")
        if kind == "enum" and not options:
            raise ValidationError("An enum needs its options.", "options")
        if kind is not None and kind != "enum" and options is not None:
            raise ValidationError("Only an enum has options.", "options")
        if options and len(set(options)) != len(options):
            raise ValidationError("Each option may appear only once.", "options")
        if kind is not None and kind != "string" and "max_length" in data:
            raise ValidationError("Only a string has a max_length.", "max_length")


class AttributeDefinitionSchema(Schema):
    name = fields.String()
    type = fields.String(metadata={"description": "`string`, `number`, `date`, `boolean` or `enum`."})
    label = fields.String()
    description = fields.String(allow_none=True)
    options = fields.List(fields.String(), metadata={"description": "An enum's allowed values; empty otherwise."})
    max_length = fields.Integer(allow_none=True, metadata={"description": "A string's longest value; null otherwise."})
    created_at = fields.AwareDateTime()


class AttributeDefinitionPageSchema(Schema):
    items = fields.List(fields.Nested(AttributeDefinitionSchema))
    next_cursor = fields.String(allow_none=True)
