"""HTTP entrypoints of accounts (companies): parse, call one use case, serialise (as api.py does for contacts)."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from services.common.etags import Precondition, etag
from services.common.idempotency import HEADER_PARAMETER, idempotent
from services.common.identity import record_or_receipt, requires
from services.common.web import read_uow, uow

from . import accounts, tags
from .models import IdempotencyRecord
from .record_schemas import (
    AccountCreateSchema,
    AccountDetailSchema,
    AccountPageSchema,
    AccountQuerySchema,
    AccountSchema,
    AccountUpdateSchema,
    TagsSchema,
)

blp = Blueprint("accounts", __name__, url_prefix="/api/v1/accounts",
                description="Companies the contacts work for; new contacts join the account of their e-mail domain.")

_ETAG_HEADER = {"ETag": {"description": 'The account\'s version as a weak tag, `W/"<version>"`; send it back in If-Match.',
                         "schema": {"type": "string"}}}


def _headers(account) -> dict[str, str]:
    return {"ETag": etag(account.version)}


def _shown(account):
    """The account, or for a key without `contacts:read` only its id and version."""
    return record_or_receipt(accounts.READ_SCOPE, account, id=account.id, version=account.version)


@blp.route("")
class Accounts(MethodView):
    @requires("contacts:read")
    @blp.arguments(AccountQuerySchema, location="query")
    @blp.response(200, AccountPageSchema)
    def get(self, args):
        """List accounts, newest first or by `sort`, by tags, domain or a search term over name and domain."""
        return accounts.list_accounts(read_uow(), **args)

    @requires("contacts:write")
    @idempotent(IdempotencyRecord)
    @blp.arguments(AccountCreateSchema)
    @blp.response(201, AccountSchema, headers=_ETAG_HEADER)
    @blp.alt_response(409, description="Another account has this domain; `existing_account_id` names it "
                                       "(only to a key with `contacts:read`).")
    @blp.doc(parameters=[HEADER_PARAMETER])
    def post(self, data):
        """Create an account; contacts at its domain that have no account join it. Without `contacts:read`: id and version."""
        account = accounts.create_account(uow(), data)
        return _shown(account), 201, {**_headers(account), "Location": f"{blp.url_prefix}/{account.id}"}


@blp.route("/<uuid:account_id>")
class AccountById(MethodView):
    @requires("contacts:read")
    @blp.response(200, AccountDetailSchema, headers=_ETAG_HEADER)
    @blp.alt_response(404, description="No account has this id.")
    def get(self, account_id):
        """One account with its contacts' roll-up (count, purchases, spend) and the first page of its contacts."""
        details = accounts.get_account_details(read_uow(), account_id)
        return details, 200, {"ETag": etag(details["version"])}

    @requires("contacts:write")
    @blp.arguments(AccountUpdateSchema)
    @blp.response(200, AccountSchema, headers=_ETAG_HEADER)
    @blp.alt_response(404, description="No account has this id.")
    @blp.alt_response(409, description="Another account has the new domain; `existing_account_id` names it "
                                       "(only to a key with `contacts:read`).")
    @blp.alt_response(412, description="If-Match named a version that is no longer current.")
    def patch(self, changes, account_id):
        """Change some fields of an account (If-Match refuses lost updates); a new domain takes in its contacts."""
        account = accounts.update_account(uow(), account_id, changes, precondition=Precondition.from_request())
        return _shown(account), 200, _headers(account)


@blp.route("/<uuid:account_id>/tags")
class AccountTags(MethodView):
    @requires("contacts:write")
    @blp.arguments(TagsSchema)
    @blp.response(200, AccountSchema, headers=_ETAG_HEADER)
    @blp.alt_response(404, description="No account has this id.")
    @blp.alt_response(412, description="If-Match named a version that is no longer current.")
    def post(self, data, account_id):
        """Add tags to an account (those it has already change nothing)."""
        account = tags.add_account_tags(uow(), account_id, data["tags"], precondition=Precondition.from_request())
        return _shown(account), 200, _headers(account)


@blp.route("/<uuid:account_id>/tags/<string:tag>")
class AccountTag(MethodView):
    @requires("contacts:write")
    @blp.response(200, AccountSchema, headers=_ETAG_HEADER)
    @blp.alt_response(404, description="No account has this id.")
    @blp.alt_response(412, description="If-Match named a version that is no longer current.")
    def delete(self, account_id, tag):
        """Remove a tag from an account (one it does not have changes nothing)."""
        account = tags.remove_account_tag(uow(), account_id, tag, precondition=Precondition.from_request())
        return _shown(account), 200, _headers(account)
