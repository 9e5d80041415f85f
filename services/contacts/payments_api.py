"""HTTP entrypoints of a contact's invoice payments: parse, call one use case in payments.py, serialise."""
from __future__ import annotations

from decimal import Decimal

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, fields, validate

from services.common.etags import Precondition, etag
from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import current_principal, record_or_receipt, requires
from services.common.pagination import PageArgs, sort_field
from services.common.schemas import CURRENCY, ExactDecimal, Trimmed
from services.common.web import read_uow, uow

from . import payments
from .models import INVOICE_REFERENCE_MAX, MONEY_PLACES, IdempotencyRecord

blp = Blueprint("payments", __name__, url_prefix="/api/v1/contacts",
                description="Invoice payments of a contact: due and paid dates (evidence for termination policies).")

_ETAG_HEADER = {"ETag": {"description": 'The payment\'s version as a weak tag, `W/"<version>"`; send it back in '
                                        "If-Match.", "schema": {"type": "string"}}}
AMOUNT_MAX = Decimal(10) ** 14  # what NUMERIC(18, 4) holds


class PaymentCreateSchema(Schema):
    class Meta:
        unknown = RAISE  # a misspelt field is an error the caller must see, not silently dropped data

    invoice_reference = Trimmed(required=True, validate=validate.Length(min=1, max=INVOICE_REFERENCE_MAX), metadata={
        "description": "The invoice's number in the billing system; one payment per invoice and contact."})
    amount = ExactDecimal(MONEY_PLACES, AMOUNT_MAX, min_inclusive=False, max_inclusive=False,
                          range_error="Must be more than {min} and less than {max}.", required=True,
                          metadata={"description": 'The invoice amount as a decimal string, e.g. "120.00".'})
    currency = fields.String(required=True, validate=CURRENCY)
    due_on = fields.Date(required=True, metadata={"description": "When the invoice was due (ISO date)."})
    paid_on = fields.Date(allow_none=True, load_default=None, metadata={
        "description": "When it was paid; null or left out while unpaid. Before the due date is fine; not in the "
                       "future."})


class PaymentUpdateSchema(Schema):
    class Meta:
        unknown = RAISE

    paid_on = fields.Date(required=True, allow_none=True, metadata={
        "description": "When the invoice was paid; null if it turned out unpaid."})


class PaymentQuerySchema(PageArgs):
    late = fields.Boolean(metadata={
        "description": "true: only invoices paid after their due date or unpaid past it; false: only the others."})
    sort = sort_field(*payments.SORTS, default=None)  # no sort: newest first


class PaymentSchema(Schema):
    id = fields.UUID()
    contact_id = fields.UUID()
    invoice_reference = fields.String()
    amount = fields.Decimal(as_string=True, places=MONEY_PLACES)
    currency = fields.String()
    due_on = fields.Date()
    paid_on = fields.Date(allow_none=True)
    late = fields.Boolean(metadata={"description": "Paid after the due date, or unpaid and past it (today, UTC)."})
    days_late = fields.Integer(metadata={
        "description": "Days after the due date it was paid, or has been unpaid; 0 when on time."})
    recorded_by = fields.String(metadata={"description": "The API key that recorded it."})
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    version = fields.Integer()


class PaymentPageSchema(Schema):
    items = fields.List(fields.Nested(PaymentSchema))
    next_cursor = fields.String(allow_none=True)


def _view(payment) -> dict:
    return payments.view(payment, today=payments.utc_today())


def _page(page: dict) -> dict:
    return {**page, "items": [_view(payment) for payment in page["items"]]}


def _shown(payment):
    """The payment, or for a key without `contacts:read` only its id and version (docs/api-contacts.md)."""
    return record_or_receipt(payments.READ_SCOPE, _view(payment), id=payment.id, version=payment.version)


@blp.route("/<uuid:contact_id>/payments")
class Payments(MethodView):
    @requires("contacts:read")
    @blp.arguments(PaymentQuerySchema, location="query")
    @blp.response(200, PaymentPageSchema)
    @blp.alt_response(404, description="No contact has this id.")
    def get(self, args, contact_id):
        """A contact's invoice payments, newest first by default; `late` filters."""
        return _page(payments.list_payments(read_uow(), contact_id, **args))

    @requires("contacts:write")
    @idempotent(IdempotencyRecord)
    @blp.arguments(PaymentCreateSchema)
    @blp.response(201, PaymentSchema, headers=_ETAG_HEADER)
    @blp.alt_response(404, description="No contact has this id.")
    @blp.alt_response(409, description="The contact already has this invoice.")
    @blp.doc(parameters=[HEADER_PARAMETER])
    def post(self, data, contact_id):
        """Record an invoice with its due date and, if paid, its payment date. Without `contacts:read`: id and
        version only."""
        payment = payments.record_payment(uow(), contact_id, data, recorded_by=current_principal().key_id)
        return _shown(payment), 201, {"ETag": etag(payment.version),
                                      "Location": f"{blp.url_prefix}/{contact_id}/payments/{payment.id}"}


@blp.route("/<uuid:contact_id>/payments/<uuid:payment_id>")
class PaymentById(MethodView):
    @requires("contacts:read")
    @blp.response(200, PaymentSchema, headers=_ETAG_HEADER)
    @blp.alt_response(404, description="No contact has this id, or it has no such payment.")
    def get(self, contact_id, payment_id):
        """One payment of a contact, with its version as the ETag."""
        payment = payments.get_payment(read_uow(), contact_id, payment_id)
        return _view(payment), 200, {"ETag": etag(payment.version)}

    @requires("contacts:write")
    @blp.arguments(PaymentUpdateSchema)
    @blp.response(200, PaymentSchema, headers=_ETAG_HEADER)
    @blp.alt_response(404, description="No contact has this id, or it has no such payment.")
    @blp.alt_response(412, description="If-Match named a version that is no longer current.")
    def patch(self, changes, contact_id, payment_id):
        """Record when the invoice was paid (If-Match refuses lost updates)."""
        payment = payments.update_payment(uow(), contact_id, payment_id, changes,
                                          precondition=Precondition.from_request())
        return _shown(payment), 200, {"ETag": etag(payment.version)}
