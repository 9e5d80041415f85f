"""The kit's OpenAPI document says what the kit sends: problem+json errors and decimals as decimal strings."""
from __future__ import annotations

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
