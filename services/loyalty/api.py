"""HTTP entrypoints of the loyalty service: parse, call one use case, serialise.

`@requires` is the outermost decorator of every view, so a caller without the scope is refused (403) before
its input is parsed. Creating POSTs honour `Idempotency-Key`: `@idempotent` sits under `@requires` and above
the flask-smorest decorators (it stores the serialised response); every view takes its unit of work from
`uow()`, which under a key is the one that also stores the response, so both commit together.
"""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import PLUGINS_READ, record_or_receipt, requires
from services.common.plugins import plugin_listing
from services.common.web import read_uow, runtime, uow

from . import returns, service
from .models import IdempotencyRecord
from .schemas import (
    AdjustmentCreateSchema,
    MemberCreateSchema,
    MemberPageSchema,
    MemberQuerySchema,
    MemberSchema,
    ProgramCreateSchema,
    ProgramPageSchema,
    ProgramQuerySchema,
    ProgramSchema,
    ProgramUpdateSchema,
    PurchaseCreateSchema,
    PurchaseSchema,
    RedemptionCreateSchema,
    ReturnCreateSchema,
    ReturnSchema,
    ReversalCreateSchema,
    TransactionPageSchema,
    TransactionQuerySchema,
    TransactionSchema,
)

blp = Blueprint("loyalty", __name__, url_prefix="/api/v1/loyalty",
                description="Loyalty programs, members, purchases and the points ledger.")

_IDEMPOTENT = {"parameters": [HEADER_PARAMETER]}


def _shown(record, record_id):
    """The record, or for a key without `loyalty:read` only its id: no balance, points or factors (api-loyalty.md)."""
    return record_or_receipt(service.READ_SCOPE, record, id=record_id)


@blp.route("/programs")
class Programs(MethodView):
    @requires("loyalty:read")
    @blp.arguments(ProgramQuerySchema, location="query")
    @blp.response(200, ProgramPageSchema)
    def get(self, args):
        """List loyalty programs, newest first or by `sort`."""
        return service.list_programs(read_uow(), **args)

    @requires(service.ADMIN_SCOPE)
    @idempotent(IdempotencyRecord)
    @blp.arguments(ProgramCreateSchema)
    @blp.response(201, ProgramSchema)
    @blp.doc(**_IDEMPOTENT)
    def post(self, data):
        """Start a loyalty program (its code is unique); needs `loyalty:admin`."""
        program = service.create_program(uow(), data)
        return _shown(program, program.id)


@blp.route("/programs/<uuid:program_id>")
class ProgramById(MethodView):
    @requires("loyalty:read")
    @blp.response(200, ProgramSchema)
    def get(self, program_id):
        """One program: its currency, points per currency unit and auto-enrolment."""
        return service.get_program(read_uow(), program_id)

    @requires(service.ADMIN_SCOPE)
    @blp.arguments(ProgramUpdateSchema)
    @blp.response(200, ProgramSchema)
    def patch(self, changes, program_id):
        """Rename a program, change its rates for future purchases, or switch auto-enrolment (`loyalty:admin`)."""
        program = service.update_program(uow(), program_id, changes)
        return _shown(program, program.id)


@blp.route("/members")
class Members(MethodView):
    @requires("loyalty:read")
    @blp.arguments(MemberQuerySchema, location="query")
    @blp.response(200, MemberPageSchema)
    def get(self, args):
        """List members, newest first or by `sort`, filtered by contact or program."""
        return service.list_members(read_uow(), **args)

    @requires("loyalty:write")
    @idempotent(IdempotencyRecord)
    @blp.arguments(MemberCreateSchema)
    @blp.response(201, MemberSchema)
    @blp.doc(**_IDEMPOTENT)
    def post(self, data):
        """Enrol a contact in a program (the default one unless named); a second enrolment is a 409."""
        member = service.enrol_member(uow(), data["contact_id"], program_id=data["program_id"])
        return _shown(member, member["id"])


@blp.route("/members/<uuid:member_id>")
class MemberById(MethodView):
    @requires("loyalty:read")
    @blp.response(200, MemberSchema)
    def get(self, member_id):
        """A member with its balance, lifetime points and tier."""
        return service.get_member(read_uow(), member_id)


@blp.route("/members/<uuid:member_id>/transactions")
class Transactions(MethodView):
    @requires("loyalty:read")
    @blp.arguments(TransactionQuerySchema, location="query")
    @blp.response(200, TransactionPageSchema)
    def get(self, args, member_id):
        """A member's ledger, newest first or by `sort`, with the plugin factors behind every earn."""
        return service.list_transactions(read_uow(), member_id, **args)


@blp.route("/members/<uuid:member_id>/redemptions")
class Redemptions(MethodView):
    @requires("loyalty:write")
    @idempotent(IdempotencyRecord)
    @blp.arguments(RedemptionCreateSchema)
    @blp.response(201, TransactionSchema)
    @blp.doc(**_IDEMPOTENT)
    def post(self, data, member_id):
        """Spend points; 409 when the balance is short (a balance never goes negative)."""
        entry = service.redeem_points(uow(), member_id, data["points"], reason=data["reason"])
        return _shown(entry, entry.id)


@blp.route("/members/<uuid:member_id>/adjustments")
class Adjustments(MethodView):
    @requires(service.ADMIN_SCOPE)
    @idempotent(IdempotencyRecord)
    @blp.arguments(AdjustmentCreateSchema)
    @blp.response(201, TransactionSchema)
    @blp.doc(**_IDEMPOTENT)
    def post(self, data, member_id):
        """Correct a balance by hand, with a reason; a deduction may not overdraw it (`loyalty:admin`)."""
        entry = service.adjust_points(uow(), member_id, data["points"], reason=data["reason"])
        return _shown(entry, entry.id)


@blp.route("/members/<uuid:member_id>/transactions/<uuid:transaction_id>/reversal")
class Reversal(MethodView):
    @requires(service.ADMIN_SCOPE)
    @idempotent(IdempotencyRecord)
    @blp.arguments(ReversalCreateSchema)
    @blp.response(201, TransactionSchema)
    @blp.doc(**_IDEMPOTENT)
    def post(self, data, member_id, transaction_id):
        """Undo one transaction with an opposite entry, once per transaction (`loyalty:admin`)."""
        entry = service.reverse_entry(uow(), member_id, transaction_id, reason=data["reason"])
        return _shown(entry, entry.id)


@blp.route("/purchases")
class Purchases(MethodView):
    @requires("loyalty:write")
    @idempotent(IdempotencyRecord)
    @blp.arguments(PurchaseCreateSchema)
    @blp.response(201, PurchaseSchema)
    @blp.alt_response(200, schema=PurchaseSchema, description="This external_id was recorded before; the first result.")
    @blp.doc(**_IDEMPOTENT)
    def post(self, data):
        """Record a purchase and earn its points; a repeated external_id returns the first result."""
        purchase, created = service.record_purchase(uow(), data, plugins=runtime().plugins)
        return _shown(purchase, purchase["id"]), 201 if created else 200


@blp.route("/purchases/<uuid:purchase_id>/returns")
class Returns(MethodView):
    @requires("loyalty:write")
    @idempotent(IdempotencyRecord)
    @blp.arguments(ReturnCreateSchema)
    @blp.response(201, ReturnSchema)
    @blp.doc(**_IDEMPOTENT)
    def post(self, data, purchase_id):
        """Record a return of part or all of a purchase; the points it earned for that part are taken back."""
        recorded = returns.return_purchase(uow(), purchase_id, data)
        return _shown(recorded, recorded["id"])


@blp.route("/plugins")
class Plugins(MethodView):
    @requires(PLUGINS_READ)
    @blp.response(200)
    def get(self):
        """The plugins this service loaded, with the hooks each implements and any that failed to load."""
        return plugin_listing(runtime().plugins)
