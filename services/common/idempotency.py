"""`Idempotency-Key` on creating POSTs (DESIGN §6): a replay returns the first response.

A key belongs to the caller (the principal's key id), so two API keys never see each other's responses.
The first request with a key claims it in a short transaction of its own (status `in_flight`, with a
lease); the view then runs inside one outer unit of work, and the key is marked `completed` with the
response in that same transaction, so the state change and the stored response commit together or not
at all. Outcomes for a key seen before:

- same request (method, path, canonical JSON body), completed  -> the stored response, replayed;
- a different request under the same key                       -> 422;
- the first request is still running (its lease has not expired) -> 409.

Only 2xx responses are kept. An error releases the key, so the caller may retry with the same key once
the cause is fixed. A claim whose process died is taken over when its lease expires; the change it was
making never committed, because the claim is completed in the same transaction as the change.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Response, current_app, g, request
from sqlalchemy import Integer, String, Text, delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from .db import utcnow
from .problems import Conflict, Unprocessable
from .uow import insert_or_reread
from .web import request_unit_of_work

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
IN_FLIGHT, COMPLETED = "in_flight", "completed"
DEFAULT_LEASE_SECONDS = 60.0
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII: a UUID, a ULID or any opaque token fits

# For `@blp.doc(parameters=[HEADER_PARAMETER])`, so the OpenAPI document shows the header.
HEADER_PARAMETER = {
    "in": "header", "name": HEADER, "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "Makes a retry safe: the same key with the same body returns the first response; "
                   "with a different body 422; while the first request still runs 409.",
}

PROCEED, REPLAY, MISMATCH, BUSY = "proceed", "replay", "mismatch", "busy"


def idempotency_model(Base):
    """Define the idempotency-key table on a service's base (like `messaging_models`); returns the model."""

    class IdempotencyRecord(Base):
        __tablename__ = "idempotency_keys"
        principal: Mapped[str] = mapped_column(String(200), primary_key=True)
        key: Mapped[str] = mapped_column(String(255), primary_key=True)
        fingerprint: Mapped[str] = mapped_column(String(64))
        status: Mapped[str] = mapped_column(String(20))
        claim_token: Mapped[str] = mapped_column(String(32))  # which request holds an in-flight claim
        locked_until: Mapped[datetime | None] = mapped_column(default=None)
        response_status: Mapped[int | None] = mapped_column(Integer, default=None)
        response_body: Mapped[str | None] = mapped_column(Text, default=None)
        created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
        completed_at: Mapped[datetime | None] = mapped_column(default=None)

    return IdempotencyRecord


def canonical_body(body: bytes) -> bytes:
    """JSON with sorted keys and no spacing, so key order and whitespace do not change the fingerprint."""
    try:
        parsed = json.loads(body)
    except (TypeError, ValueError, UnicodeDecodeError):
        return body  # not JSON: the exact bytes count
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fingerprint(method: str, path: str, body: bytes) -> str:
    """sha256 of method, path and canonical JSON body: what 'the same request' means for a key."""
    digest = hashlib.sha256()
    digest.update(method.upper().encode() + b"\n" + path.encode() + b"\n")
    digest.update(canonical_body(body or b""))
    return digest.hexdigest()


def _file_digest(file) -> str:
    """sha256 of an uploaded file part, read in blocks from where werkzeug spooled it, then rewound for the view."""
    digest, stream = hashlib.sha256(), file.stream
    for block in iter(lambda: stream.read(1 << 16), b""):
        digest.update(block)
    stream.seek(0)
    return digest.hexdigest()


def request_body() -> bytes:
    """The body as `fingerprint` counts it: a multipart/form-data one by its parts (fields, JSON ones canonical,
    and each file's digest), since a client picks a new random boundary for every request, a retry included."""
    if request.mimetype != "multipart/form-data":
        return request.get_data()
    fields = sorted((name, canonical_body(value.encode()).decode()) for name, value in request.form.items(multi=True))
    files = sorted((name, _file_digest(file)) for name, file in request.files.items(multi=True))
    return json.dumps({"fields": fields, "files": files}).encode()


def key_problem(key: str | None) -> str | None:
    """Why a header value is not a usable key, or None when it is."""
    if key is None or not _KEY.match(key):
        return "Use 1 to 255 visible ASCII characters, e.g. a UUID."
    return None


def judge(*, stored_fingerprint: str, status: str, locked_until: datetime | None, request_fingerprint: str,
          now: datetime) -> str:
    """What to do with a request whose key was seen before: REPLAY, MISMATCH, BUSY or PROCEED (take over)."""
    if stored_fingerprint != request_fingerprint:
        return MISMATCH
    if status == COMPLETED:
        return REPLAY
    if locked_until is not None and locked_until > now:
        return BUSY
    return PROCEED  # the claimant died without committing; its lease is up


@dataclass(frozen=True)
class Claim:
    outcome: str
    token: str | None = None
    status: int | None = None
    body: str | None = None


def claim_key(session_factory, model, principal: str, key: str, request_fingerprint: str, *,
              lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Claim:
    """Claim `key` for this request in a committed transaction of its own, or say why not."""
    token = uuid.uuid4().hex
    for _attempt in range(3):
        now = utcnow()
        lease = now + timedelta(seconds=lease_seconds)
        with session_factory() as session, session.begin():
            try:
                row = insert_or_reread(
                    session, model(principal=principal, key=key, fingerprint=request_fingerprint,
                                   status=IN_FLIGHT, claim_token=token, locked_until=lease),
                    reread=lambda: session.get(model, (principal, key), with_for_update=True, populate_existing=True))
            except IntegrityError:
                continue  # released between our insert and our read: try again
            if row is None:
                return Claim(PROCEED, token)
            outcome = judge(stored_fingerprint=row.fingerprint, status=row.status, locked_until=row.locked_until,
                            request_fingerprint=request_fingerprint, now=now)
            if outcome == PROCEED:
                row.claim_token, row.locked_until = token, lease
                return Claim(PROCEED, token)
            return Claim(outcome, None, row.response_status, row.response_body)
    raise Conflict("The Idempotency-Key is being claimed and released by other requests; retry later.")


def release_key(session_factory, model, principal: str, key: str, token: str) -> None:
    """Forget an in-flight claim (the request failed), so the same key may be retried."""
    with session_factory() as session, session.begin():
        session.execute(delete(model).where(model.principal == principal, model.key == key,
                                            model.status == IN_FLIGHT, model.claim_token == token))


def complete_key(session, model, principal: str, key: str, token: str, response: Response) -> bool:
    """Store the response in the caller's transaction; False when another request took the claim over."""
    result = session.execute(
        update(model)
        .where(model.principal == principal, model.key == key, model.status == IN_FLIGHT, model.claim_token == token)
        .values(status=COMPLETED, locked_until=None, response_status=response.status_code,
                response_body=response.get_data(as_text=True), completed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def idempotent(model, *, lease_seconds: float = DEFAULT_LEASE_SECONDS):
    """Honour `Idempotency-Key` on a flask-smorest view; put it above `@blp.arguments`/`@blp.response`.

    The view gets its unit of work from `services.common.web.uow()`, which returns the outer one set here,
    so its change joins the transaction that stores the response.
    """

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            key = request.headers.get(HEADER)
            if key is None:
                return view(*args, **kwargs)
            problem = key_problem(key)
            if problem:
                raise Unprocessable(f"The {HEADER} header is not valid.", errors={HEADER: [problem]})
            rt = current_app.extensions["crm.runtime"]
            principal = g.principal.key_id if getattr(g, "principal", None) else "anonymous"
            claim = claim_key(rt.session_factory, model, principal, key,
                              fingerprint(request.method, request.path, request_body()),
                              lease_seconds=lease_seconds)
            if claim.outcome == REPLAY:
                replay = Response(claim.body, status=claim.status, mimetype="application/json")
                replay.headers[REPLAYED_HEADER] = "true"
                return replay
            if claim.outcome == MISMATCH:
                raise Unprocessable(f"This {HEADER} was already used for a different request.",
                                    errors={HEADER: [("Already used with a different method, path or body; "
                                                      "use a new key for a new request.")]})
            if claim.outcome == BUSY:
                raise Conflict(f"A request with this {HEADER} is still being processed; retry shortly.")
            outer = rt.uow(correlation_id=g.request_id)
            try:
                with request_unit_of_work(outer), outer:
                    response = current_app.make_response(view(*args, **kwargs))
                    if 200 <= response.status_code < 300:
                        if not complete_key(outer.session, model, principal, key, claim.token, response):
                            raise Conflict(f"The claim on this {HEADER} expired and another request took it over.")
                        outer.commit()
                        return response
            except BaseException:
                # The outer transaction is closed (rolled back) by now, so releasing cannot wait on its locks.
                release_key(rt.session_factory, model, principal, key, claim.token)
                raise
            release_key(rt.session_factory, model, principal, key, claim.token)
            return response

        return wrapper

    return decorate
