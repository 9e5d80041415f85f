"""The gateway's admin API for API keys: parse, call one use case in keys.py, serialise."""
from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from services.common.identity import requires
from services.common.web import uow

from . import keys
from .schemas import CreatedKeySchema, KeyCreateSchema, KeyPageSchema, KeyQuerySchema

blp = Blueprint("admin-keys", __name__, url_prefix="/api/v1/admin/keys",
                description="Create, list and revoke API keys (requires the `admin` scope).")


@blp.route("")
class Keys(MethodView):
    @requires("admin")
    @blp.arguments(KeyQuerySchema, location="query")
    @blp.response(200, KeyPageSchema)
    def get(self, args):
        """List API keys, newest first or by `sort` (never their hash or plaintext)."""
        with uow() as work:
            return keys.list_keys(work.session, **args)

    @requires("admin")
    @blp.arguments(KeyCreateSchema)
    @blp.response(201, CreatedKeySchema)
    def post(self, data):
        """Create an API key; the response shows the key once. A partner key's partner must exist (422 if not,
        503 when the partners service cannot say)."""
        with uow() as work:
            gateway = current_app.extensions["crm.gateway"]
            key, plaintext = keys.create_key(work.session, **data, partner_exists=gateway.proxy.partner_exists)
            work.commit()
        return {**{f: getattr(key, f) for f in CreatedKeySchema().fields if f != "key"}, "key": plaintext}


@blp.route("/<uuid:key_id>")
class KeyById(MethodView):
    @requires("admin")
    @blp.response(204)
    def delete(self, key_id):
        """Revoke an API key at once."""
        with uow() as work:
            keys.revoke_key(work.session, key_id)
            work.commit()
