"""The kit's OpenAPI document says what the kit sends: problem+json errors and decimals as decimal strings."""
from __future__ import annotations

import threading
import time
from decimal import Decimal

from flask import Flask
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from services.common.openapi import SuiteApi

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


class PriceSchema(Schema):
    amount = fields.Decimal(as_string=True, required=True,
                            validate=validate.Range(min=Decimal(0), max=Decimal(1000), min_inclusive=False),
                            metadata={"description": "In EUR."})
    delta = fields.Decimal(as_string=True)
    ratio = fields.Decimal()  # not sent as a string: left as apispec documents it


def _spec() -> dict:
    app = Flask("openapi-test")
    app.config.update(API_TITLE="t", API_VERSION="v1", OPENAPI_VERSION="3.0.3")
    api = SuiteApi(app)
    blp = Blueprint("prices", __name__, url_prefix="/prices")

    @blp.route("/<int:price_id>")
    class Price(MethodView):
        @blp.arguments(PriceSchema)
        @blp.response(200, PriceSchema)
        @blp.alt_response(404, description="No such price.")
        def patch(self, data, price_id):
            """Change a price."""
            return data

    api.register_blueprint(blp)
    return api.spec.to_dict()


def test_a_decimal_sent_as_a_string_is_documented_as_a_decimal_string_with_its_range_in_words():
    properties = _spec()["components"]["schemas"]["Price"]["properties"]
    amount = properties["amount"]
    assert amount["type"] == "string" and amount["format"] == "decimal"
    assert amount["pattern"] == r"^[0-9]+(\.[0-9]+)?$"  # no minus sign: the range starts above 0
    assert not {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} & set(amount)
    assert amount["description"].startswith("In EUR. ") and "(> 0, <= 1000)" in amount["description"]
    assert properties["delta"]["pattern"] == r"^-?[0-9]+(\.[0-9]+)?$"
    assert properties["ratio"]["type"] == "number"


def test_every_error_response_is_documented_as_problem_json_with_the_problem_schema():
    spec = _spec()
    responses = spec["paths"]["/prices/{price_id}"]["patch"]["responses"]
    assert responses["404"]["content"] == {"application/problem+json": {"schema": PROBLEM_REF}}
    assert responses["404"]["description"] == "No such price."
    for name in ("UNPROCESSABLE_ENTITY", "DEFAULT_ERROR"):
        assert spec["components"]["responses"][name]["content"] == {"application/problem+json": {"schema": PROBLEM_REF}}
    assert list(responses["200"]["content"]) == ["application/json"]


def test_the_problem_schema_requires_the_rfc_9457_members_and_allows_extensions():
    problem = _spec()["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status"}
    assert problem["properties"]["status"]["type"] == "integer"
    assert problem["additionalProperties"] is True


class CountingBlueprint(Blueprint):
    """Counts how often its views are documented; reads the document while doing so, as a documenting callback
    of flask-smorest may."""

    def __init__(self, *args, pause: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.documented = 0
        self.pause = pause

    def register_views_in_doc(self, api, app, spec, **kwargs):
        assert api.spec is spec  # a read from inside the writing returns the document as it stands
        time.sleep(self.pause)
        self.documented += 1
        super().register_views_in_doc(api, app, spec, **kwargs)


def _lazy_app(pause: float = 0.0):
    app = Flask("openapi-lazy-test")
    app.config.update(API_TITLE="t", API_VERSION="v1", OPENAPI_VERSION="3.0.3", OPENAPI_URL_PREFIX="/api")
    api = SuiteApi(app)
    blueprints = []
    for name in ("second", "first"):  # registration order, not alphabetical, is the document's order
        blp = CountingBlueprint(name, __name__, url_prefix=f"/{name}", description=f"The {name} one.", pause=pause)

        @blp.route("/<int:item_id>")
        class Item(MethodView):
            @blp.response(200, PriceSchema)
            def get(self, item_id):
                return {"amount": Decimal(item_id)}

        api.register_blueprint(blp)
        blueprints.append(blp)
    return app, api, blueprints


def test_views_are_documented_on_the_first_read_of_the_document_and_their_routes_serve_before_it():
    app, api, blueprints = _lazy_app()
    assert [b.documented for b in blueprints] == [0, 0]
    assert app.test_client().get("/first/7").get_json() == {"amount": "7"}
    assert [b.documented for b in blueprints] == [0, 0]
    spec = app.test_client().get("/api/openapi.json").get_json()
    assert [b.documented for b in blueprints] == [1, 1]
    assert list(spec["paths"]) == ["/second/{item_id}", "/first/{item_id}"]
    assert spec["tags"] == [{"name": "second", "description": "The second one."},
                            {"name": "first", "description": "The first one."}]
    assert api.spec.to_dict() == spec and [b.documented for b in blueprints] == [1, 1]


def test_two_first_reads_at_once_document_each_view_once_and_see_the_whole_document():
    _app, api, blueprints = _lazy_app(pause=0.05)
    start = threading.Barrier(2, timeout=10)
    seen = []

    def read():
        start.wait()
        seen.append(api.spec.to_dict())

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert [b.documented for b in blueprints] == [1, 1]
    assert len(seen) == 2 and seen[0] == seen[1]
    assert list(seen[0]["paths"]) == ["/second/{item_id}", "/first/{item_id}"]
