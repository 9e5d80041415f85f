"""Swagger UI for `/api/docs`, served from the suite's own files rather than a CDN.

The JavaScript and CSS come from the `flask-swagger-ui` distribution, which ships the Swagger UI release it is
numbered after (5.x) in its `dist/` folder; only those files are used, not its blueprint. The page itself is
flask-smorest's template, pointed at the assets route below.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from flask import Flask, abort, send_from_directory

ASSETS_PATH = "/api/docs/assets/"
# What flask-smorest's swagger_ui.html loads from OPENAPI_SWAGGER_UI_URL; nothing else is served.
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"})
# A day: the files change only with the installed package.
MAX_AGE = 86_400

CONFIG = {
    "OPENAPI_SWAGGER_UI_URL": ASSETS_PATH,
    # Swagger UI otherwise sends the spec's URL to validator.swagger.io for its badge.
    "OPENAPI_SWAGGER_UI_CONFIG": {"validatorUrl": None},
}


@functools.cache
def assets_dir() -> Path:
    """The installed Swagger UI files (found without importing the package, which would read its metadata)."""
    spec = importlib.util.find_spec("flask_swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("flask-swagger-ui is not installed; it provides the files of /api/docs")
    return Path(next(iter(spec.submodule_search_locations))) / "dist"


def install(app: Flask) -> None:
    """Serve the Swagger UI files at ASSETS_PATH (the page at /api/docs loads them from there)."""

    def swagger_ui_asset(filename: str):
        if filename not in ASSETS:
            abort(404)
        return send_from_directory(assets_dir(), filename, max_age=MAX_AGE)

    app.add_url_rule(f"{ASSETS_PATH}<path:filename>", "swagger_ui_asset", swagger_ui_asset, methods=["GET"])
