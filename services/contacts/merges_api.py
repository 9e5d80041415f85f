"""HTTP entrypoints for duplicates and merges: find pairs that are probably one person, merge them into one.

Merging is privileged (`contacts:merge`, which `contacts:*` does not include): it deletes a contact.
"""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, fields

from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import current_principal, record_or_receipt, requires
from services.common.pagination import PageArgs
from services.common.web import read_uow, runtime, uow

from . import duplicates, merges
from .models import IdempotencyRecord
from .schemas import ContactDetailSchema

blp = Blueprint("contact_merges", __name__, url_prefix="/api/v1/contacts",
                description="Duplicate candidates, and merging two contacts that are one person.")

MERGE_SCOPE = "contacts:merge"
# What a merging key without `contacts:read` is told: what it did, not the record it did it to.
RECEIPT = ("survivor_id", "merged_id", "dry_run", "merged_at", "merged_by")


# -- schemas ------------------------------------------------------------------------------------------------

class DuplicateQuerySchema(PageArgs):
    contact_id = fields.UUID(metadata={"description": "Only this contact's candidates."})


class ReasonSchema(Schema):
    code = fields.String(metadata={"description": "Why the two look like one person (docs/api-contacts.md)."})
    weight = fields.Integer(metadata={"description": "How much this reason counts, 0-100."})
    value = fields.String(metadata={"description": "What the two share: the number, the address, the name."})


class CandidateContactSchema(Schema):
    """What tells two contacts apart at a glance; GET /api/v1/contacts/{id} has the whole record."""

    id = fields.UUID()
    email = fields.String()
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    company = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    account_id = fields.UUID(allow_none=True)
    created_at = fields.AwareDateTime()
    version = fields.Integer()


class DuplicateSchema(Schema):
    score = fields.Integer(metadata={"description": "0-100: how likely the two are one person."})
    reasons = fields.List(fields.Nested(ReasonSchema), metadata={"description": "Strongest first."})
    contacts = fields.List(fields.Nested(CandidateContactSchema),
                           metadata={"description": "The two contacts, older record first."})


class DuplicatePageSchema(Schema):
    items = fields.List(fields.Nested(DuplicateSchema))
    next_cursor = fields.String(allow_none=True)


class MergeQuerySchema(Schema):
    dry_run = fields.Boolean(load_default=False, metadata={"description": "Show the outcome, change nothing."})


class MergeRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    survivor_id = fields.UUID(required=True, metadata={"description": "The contact that stays."})
    merged_id = fields.UUID(required=True, metadata={"description": "The contact merged into it and deleted."})
    dry_run = fields.Boolean(load_default=False, metadata={"description": "Show the outcome, change nothing."})


class MergeSchema(Schema):
    survivor_id = fields.UUID()
    merged_id = fields.UUID()
    dry_run = fields.Boolean()
    contact = fields.Nested(ContactDetailSchema, metadata={"description": "The survivor as the merge leaves it."})
    moved = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "Rows of each kind of record moved (or folded) from the merged contact to the survivor."})
    filled = fields.List(fields.String(), metadata={
        "description": "The survivor's fields the merge changes: filled from the merged contact, or combined."})
    merged_at = fields.AwareDateTime(allow_none=True, metadata={"description": "Null for a dry run."})
    merged_by = fields.String(metadata={"description": "The API key that merged."})


# -- views --------------------------------------------------------------------------------------------------

@blp.route("/duplicates")
class Duplicates(MethodView):
    @requires("contacts:read")
    @blp.arguments(DuplicateQuerySchema, location="query")
    @blp.response(200, DuplicatePageSchema)
    @blp.alt_response(301, description="`contact_id` was merged: the same list for its survivor (`survivor_id`).")
    @blp.alt_response(404, description="No contact has the id given as `contact_id`.")
    def get(self, args):
        """Pairs of contacts that are probably one person, best first, with a score and the reasons."""
        return duplicates.list_duplicates(read_uow(), region=runtime().settings.default_phone_region, **args)


@blp.route("/merges")
class Merges(MethodView):
    @requires(MERGE_SCOPE)
    @idempotent(IdempotencyRecord)
    @blp.arguments(MergeQuerySchema, location="query")
    @blp.arguments(MergeRequestSchema)
    @blp.response(200, MergeSchema)
    @blp.alt_response(404, description="No contact has one of the ids.")
    @blp.alt_response(410, description="One of the ids was merged already; `survivor_id` names the contact it "
                                       "lives on as (only to a key with `contacts:read`).")
    @blp.doc(parameters=[HEADER_PARAMETER])
    def post(self, query, data):
        """Merge one contact into another (`contacts:merge`); `dry_run` shows the outcome. Without read: a receipt."""
        outcome = merges.merge_contacts(uow(), data["survivor_id"], data["merged_id"],
                                        actor=current_principal().key_id, dry_run=query["dry_run"] or data["dry_run"])
        return record_or_receipt("contacts:read", outcome, **{name: outcome[name] for name in RECEIPT})
