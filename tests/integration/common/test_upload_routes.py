"""Upload routes of the kit: a view marked with `upload_arguments` (or `upload_route`) takes multipart bodies up to
its size; every other route keeps taking JSON only, up to 1 MiB; refusals are problem+json."""
from __future__ import annotations

import io

import pytest
from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, ValidationError, fields
from werkzeug.datastructures import FileStorage

from services.common.settings import SettingsError, from_env
from services.common.web import ANY_MEDIA_TYPE, create_service_app, upload_arguments, upload_route

pytestmark = pytest.mark.integration

MiB = 1 << 20
UPLOAD_LIMIT = 2 * MiB  # CRM_MAX_UPLOAD_BYTES of the test app
OWN_LIMIT = MiB + MiB // 2  # the `max_bytes` of one route


class FilePart(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, FileStorage):
            raise ValidationError("Not a file part.")
        return value.stream.read()


class PartsSchema(Schema):
    class Meta:
        unknown = RAISE

    file = FilePart(required=True, metadata={"type": "string", "format": "binary"})
    label = fields.String(required=True)


class JsonBodySchema(Schema):
    class Meta:
        unknown = RAISE

    text = fields.String(required=True)
    label = fields.String(required=True)


def _app():
    blp = Blueprint("things", __name__, url_prefix="/things")

    @blp.route("/uploads")
    class Uploads(MethodView):
        @upload_arguments(blp, PartsSchema, json_schema=JsonBodySchema)
        @blp.response(200)
        def post(self, data):
            """Take a file."""
            body = data.get("file") or data["text"].encode()
            return {"bytes": len(body), "label": data["label"], "kind": request.mimetype}

    @blp.route("/small-uploads", methods=["POST"])
    @upload_arguments(blp, PartsSchema, max_bytes=OWN_LIMIT)
    @blp.response(200)
    def small_upload(data):
        """Take a smaller file."""
        return {"bytes": len(data["file"])}

    @blp.route("", methods=["POST"])
    @blp.arguments(JsonBodySchema)
    @blp.response(200)
    def plain(data):
        """Take JSON only."""
        return {"bytes": len(data["text"])}

    @blp.route("/raw", methods=["POST"])
    @upload_route(ANY_MEDIA_TYPE, applies=lambda: request.args.get("upload") == "yes")
    def raw():
        return {"bytes": len(request.get_data())}

    settings = from_env("kit", {"CRM_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT), "CRM_LOG_LEVEL": "WARNING"},
                        require_secret=False)
    return create_service_app("kit", title="Kit", blueprints=[blp], settings=settings, readiness={},
                              verify_identity=False)


@pytest.fixture(scope="module")
def app():
    return _app()


@pytest.fixture
def client(app):
    return app.test_client()


def _multipart(size: int, **fields) -> dict:
    return {"file": (io.BytesIO(b"x" * size), "people.csv", "text/csv"), **fields}


def _assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/problem+json"
    return response.json


def test_an_upload_route_takes_multipart_up_to_its_size(client):
    response = client.post("/things/uploads", data=_multipart(UPLOAD_LIMIT - 4096, label="big"),
                           content_type="multipart/form-data")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json == {"bytes": UPLOAD_LIMIT - 4096, "label": "big", "kind": "multipart/form-data"}
    # A route's own size wins over the setting.
    assert client.post("/things/small-uploads", data=_multipart(OWN_LIMIT - 4096, label="x"),
                       content_type="multipart/form-data").json == {"bytes": OWN_LIMIT - 4096}


def test_a_multipart_body_over_the_routes_size_is_a_413_problem_naming_the_limit(client):
    problem = _assert_problem(client.post("/things/uploads", data=_multipart(UPLOAD_LIMIT, label="big"),
                                          content_type="multipart/form-data"), 413)
    assert problem["max_bytes"] == UPLOAD_LIMIT and f"{UPLOAD_LIMIT:,} bytes" in problem["detail"]
    problem = _assert_problem(client.post("/things/small-uploads", data=_multipart(OWN_LIMIT, label="x"),
                                          content_type="multipart/form-data"), 413)
    assert problem["max_bytes"] == OWN_LIMIT


def test_a_chunked_upload_without_a_length_is_held_to_the_size_as_it_is_read(app, client):
    def chunked(size: int):
        # The multipart body as a client streaming it would send it: no Content-Length.
        built = app.test_request_context("/", method="POST", data=_multipart(size, label="c"),
                                         content_type="multipart/form-data")
        body, content_type = built.request.get_data(), built.request.content_type
        return client.post("/things/uploads", input_stream=io.BytesIO(body), content_type=content_type,
                           headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})

    assert chunked(MiB + 10).json["bytes"] == MiB + 10
    _assert_problem(chunked(UPLOAD_LIMIT + 10), 413)


def test_an_upload_route_takes_json_too_but_only_up_to_1_mib(client):
    assert client.post("/things/uploads", json={"text": "hello", "label": "j"}).json == {
        "bytes": 5, "label": "j", "kind": "application/json"}
    _assert_problem(client.post("/things/uploads", json={"text": "x" * MiB, "label": "j"}), 413)


def test_an_upload_route_refuses_other_media_types_naming_what_it_takes(client):
    problem = _assert_problem(client.post("/things/uploads", data=b"a,b\n", content_type="text/csv"), 415)
    assert problem["detail"] == "Send the body as application/json or multipart/form-data, not text/csv."


def test_every_other_route_still_takes_only_json_up_to_1_mib(client):
    assert client.post("/things", json={"text": "hi", "label": "p"}).json == {"bytes": 2}
    # Multipart, small or over 1 MiB: 415 (the media type is refused before the size matters).
    for size in (10, UPLOAD_LIMIT - 4096):
        problem = _assert_problem(client.post("/things", data=_multipart(size, label="p"),
                                              content_type="multipart/form-data"), 415)
        assert problem["detail"] == "Send the body as application/json, not multipart/form-data."
    _assert_problem(client.post("/things", json={"text": "x" * MiB, "label": "p"}), 413)


def test_applies_decides_per_request_whether_a_view_takes_an_upload(client):
    body = b"x" * (MiB + 1)
    assert client.post("/things/raw?upload=yes", data=body, content_type="text/csv").json == {"bytes": MiB + 1}
    _assert_problem(client.post("/things/raw", data=body, content_type="text/csv"), 415)
    _assert_problem(client.post("/things/raw?upload=yes", data=b"x" * (UPLOAD_LIMIT + 1), content_type="text/csv"),
                    413)


@pytest.mark.parametrize("make, field", [
    (lambda: {"label": "no file"}, "file"),
    (lambda: _multipart(10), "label"),
    (lambda: {"file": "text, not a file part", "label": "x"}, "file"),
    (lambda: _multipart(10, label="x", extra="?"), "extra"),
])
def test_a_missing_wrong_or_unknown_part_is_a_422_naming_it(client, make, field):
    problem = _assert_problem(client.post("/things/uploads", data=make(), content_type="multipart/form-data"), 422)
    assert field in problem["errors"], problem


def test_the_openapi_document_shows_both_bodies_and_the_refusals(client):
    operation = client.get("/api/openapi.json").json["paths"]["/things/uploads"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    schemas = client.get("/api/openapi.json").json["components"]["schemas"]
    multipart = schemas[content["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert multipart["properties"]["file"] == {"type": "string", "format": "binary"}
    for status in ("413", "415", "422"):
        assert list(operation["responses"][status]["content"]) == ["application/problem+json"], status


def test_the_upload_size_setting_is_checked_at_start_up():
    def read(value):
        return from_env("kit", {"CRM_MAX_UPLOAD_BYTES": value}, require_secret=False).max_upload_bytes

    assert from_env("kit", {}, require_secret=False).max_upload_bytes == 32 * MiB
    assert read(str(100 * MiB)) == 100 * MiB
    for bad, message in (("32MiB", "expected a whole number of bytes"), (str(MiB - 1), "must be 1048576 or more"),
                         (str((1 << 30) + 1), "must be at most 1073741824 bytes")):
        with pytest.raises(SettingsError, match=message) as caught:
            read(bad)
        assert caught.value.variable == "CRM_MAX_UPLOAD_BYTES"
    assert read(str(MiB)) == MiB  # the smallest: what every route takes
