"""What each service's OpenAPI document says about the kit's own conventions, so it matches what is sent.

flask-smorest documents every error as `application/json` with its own error body ({code, status, message});
the kit answers RFC 9457 `application/problem+json` (problems.py). apispec documents a marshmallow Decimal as
a JSON number and writes a `Range` of Decimals as strings ("maximum": "1000"); the services send and take
exact decimals as strings (money never passes through a float). Both are put right here, for every service.
"""
from __future__ import annotations

import threading
from decimal import Decimal

from apispec import BasePlugin
from flask_smorest import Api
from marshmallow import INCLUDE, Schema, fields, validate

from .problems import MEDIA_TYPE

PROBLEM_SCHEMA_NAME = "Problem"
# Error statuses whose response has no body to describe (none today; kept so a 304-like answer is never given one).
_BODYLESS = {"204", "304"}


class ProblemSchema(Schema):
    """An RFC 9457 problem: what every 4xx and 5xx of the suite carries, as `application/problem+json`."""

    class Meta:
        unknown = INCLUDE  # extension members: errors, checks, existing_contact_id, current_version, ...

    type = fields.String(required=True, metadata={"description": "A URI naming the kind of problem."})
    title = fields.String(required=True)
    status = fields.Integer(required=True, metadata={"description": "The HTTP status code, repeated."})
    detail = fields.String(metadata={"description": "What went wrong with this request."})
    instance = fields.String(allow_none=True, metadata={"description": "The request's path."})
    request_id = fields.String(metadata={"description": "Quote it when you report a problem."})
    errors = fields.Dict(keys=fields.String(), metadata={
        "description": "On a 422: each invalid field (or header, or `_schema`) with its messages."})


def _is_error(status) -> bool:
    status = str(status)
    return status == "default" or (status[:1] in {"4", "5"} and status not in _BODYLESS)


class ProblemResponses(BasePlugin):
    """apispec plugin: every error response is documented as problem+json with the Problem schema.

    A response that names no body (`@blp.alt_response(404, description=...)`) gets one; one documented as
    `application/json` (flask-smorest's DEFAULT_ERROR and UNPROCESSABLE_ENTITY) is moved to problem+json.
    """

    def init_spec(self, spec):
        super().init_spec(spec)
        self.spec = spec
        spec.components.schema(PROBLEM_SCHEMA_NAME, schema=ProblemSchema)

    def _problem_content(self) -> dict:
        return {MEDIA_TYPE: {"schema": self.spec.components.get_ref("schema", PROBLEM_SCHEMA_NAME)}}

    def response_helper(self, response, **kwargs):
        """A response component (flask-smorest registers one per HTTP status, with its error schema)."""
        content = response.get("content") or {}
        if "application/json" in content and MEDIA_TYPE not in content:
            content[MEDIA_TYPE] = content.pop("application/json")
        return response

    def operation_helper(self, path=None, operations=None, **kwargs):
        """Each operation's own error responses (alt_response), after the marshmallow plugin resolved them."""
        for operation in (operations or {}).values():
            if not isinstance(operation, dict):
                continue
            for status, response in (operation.get("responses") or {}).items():
                if not isinstance(response, dict) or not _is_error(status) or "$ref" in response:
                    continue
                content = response.setdefault("content", {})
                if "application/json" in content and MEDIA_TYPE not in content:
                    content[MEDIA_TYPE] = content.pop("application/json")
                if not content:
                    response["content"] = self._problem_content()


def _bound(value) -> str:
    return format(Decimal(value).normalize(), "f")


def decimal_as_string(converter, field, ret=None, **kwargs) -> dict:
    """apispec attribute function: a Decimal sent as a string is documented as one (`format: decimal`).

    Its `Range` (which apispec would write as string `minimum`/`maximum` under `type: number`) moves into the
    description, and a pattern says what a decimal string looks like: digits, an optional fraction, a minus
    sign only where a negative value is allowed.
    """
    ret = ret if ret is not None else {}
    if not isinstance(field, fields.Decimal) or not field.as_string:
        return {}
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        ret.pop(key, None)
    ret["type"], ret["format"] = "string", "decimal"
    ranges = [v for v in field.validators if isinstance(v, validate.Range)]
    non_negative = any(r.min is not None and Decimal(r.min) >= 0 for r in ranges)
    ret.setdefault("pattern", r"^[0-9]+(\.[0-9]+)?$" if non_negative else r"^-?[0-9]+(\.[0-9]+)?$")
    bounds = []
    for r in ranges:
        if r.min is not None:
            bounds.append(f"{'>=' if r.min_inclusive else '>'} {_bound(r.min)}")
        if r.max is not None:
            bounds.append(f"{'<=' if r.max_inclusive else '<'} {_bound(r.max)}")
    note = "An exact decimal, as a string" + (f" ({', '.join(bounds)})" if bounds else "") + "."
    ret["description"] = f"{ret['description']} {note}" if ret.get("description") else note
    return {}


class SuiteApi(Api):
    """flask-smorest's Api whose document says what the kit sends: problem+json errors, decimal strings.

    The document is written when it is first read, not when a blueprint is registered: documenting every view
    (apispec converting each schema) was two thirds of building an app, paid by every process at start-up and by
    every test, while most processes never serve the document. A blueprint's routes are registered at once; its
    views are documented, in registration order, on the first read of `spec` (the document's view, the gateway's
    aggregate, a test). The document is the same either way.
    """

    ERROR_SCHEMA = ProblemSchema

    def __init__(self, app=None, **kwargs):
        self._undocumented: list[tuple] = []  # (blueprint, name, parameters), in registration order
        self._documenting = threading.RLock()
        self._writing = False
        self._spec = None
        super().__init__(app, **kwargs)

    @property
    def spec(self):
        if self._undocumented:
            self._document_views()
        return self._spec

    @spec.setter
    def spec(self, value):
        self._spec = value

    def register_blueprint(self, blp, *, parameters=None, **options):
        """Register the blueprint's routes now and document its views on the first read of the document.

        The first two steps are flask-smorest's own `register_blueprint`; its third (documenting) is deferred."""
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        self._undocumented.append((blp, name, parameters))

    def _document_views(self) -> None:
        # Two first reads at once: one writes the document, the other waits for it. A read of `spec` from inside
        # the writing (flask-smorest's documenting callbacks get this Api) returns the document as it stands.
        with self._documenting:
            if self._writing:
                return
            self._writing = True
            try:
                while self._undocumented:
                    blp, name, parameters = self._undocumented[0]
                    blp.register_views_in_doc(self, self._app, self._spec, name=name, parameters=parameters)
                    self._spec.tag({"name": name, "description": blp.description})
                    self._undocumented.pop(0)
            finally:
                self._writing = False

    def init_app(self, app, *, spec_kwargs=None):
        spec_kwargs = {**self._spec_kwargs, **(spec_kwargs or {})}
        spec_kwargs["extra_plugins"] = [*spec_kwargs.get("extra_plugins", ()), ProblemResponses()]
        super().init_app(app, spec_kwargs=spec_kwargs)
        # Before any blueprint is registered: a schema is converted when the first route using it is documented.
        self.ma_plugin.converter.add_attribute_function(decimal_as_string)
