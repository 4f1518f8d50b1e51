"""`GET /api/openapi.json`: the OpenAPI 3.1 document of the management API."""

from __future__ import annotations

from flask import jsonify

from console.api import bp
from gateway import __version__

SPEC: dict = {
    "openapi": "3.1.0",
    "info": {"title": "Relayhouse management API", "version": __version__},
    "paths": {},
}


@bp.get("/openapi.json")
def openapi():  # noqa: ANN201
    return jsonify(SPEC)
