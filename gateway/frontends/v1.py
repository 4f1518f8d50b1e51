"""The `/v1` routes of the OpenAI-compatible API, plus the legacy `/dashboard/billing/*` endpoints.

The relayed endpoints (`POST /v1/chat/completions` and the others in `ENDPOINTS`) are served by
`RelayRoutes`, straight from the WSGI environ and ahead of Flask: they are the hot path, and need none of
Flask's request machinery (no session, no routing table, no context). Everything else is Flask's.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, request
from sqlalchemy import func, select
from werkzeug.datastructures import EnvironHeaders

from gateway import relay
from gateway.auth import authenticate
from gateway.domain.models import UsageLog, db
from gateway.domain.pricing import micro_to_usd
from gateway.frontends import openai
from gateway.neutral import GatewayError, bad_request, new_request_id

log = logging.getLogger("relayhouse")
bp = Blueprint("v1", __name__)

ENDPOINTS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/moderations": "moderations",
}
STATUS_LINES = {int(s): f"{int(s)} {s.phrase}" for s in HTTPStatus}
PREFIXES = ("/v1/", "/dashboard/")  # what API keys reach; everything else is the console's
# Browser front ends call the API from their own origin. The key travels in a header, never a cookie, so
# any origin may call: as OpenAI's own API allows.
CORS_HEADERS = [("Access-Control-Allow-Origin", "*"), ("Access-Control-Expose-Headers", "X-Request-Id")]
PREFLIGHT_HEADERS = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS"),
    ("Access-Control-Max-Age", "86400"),
]


class RelayRoutes:
    """WSGI middleware in front of the Flask app: answers the relayed endpoints itself, passes the rest on."""

    def __init__(self, runtime: Any, app: Callable) -> None:
        self.runtime = runtime
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ["REQUEST_METHOD"] == "OPTIONS" and path.startswith(PREFIXES):
            return _preflight(environ, start_response)
        endpoint = ENDPOINTS.get(path)
        if endpoint is None:
            return self.app(environ, start_response)
        request_id = new_request_id()
        if environ["REQUEST_METHOD"] != "POST":
            err = GatewayError(
                405, f"Use POST for {environ['PATH_INFO']}.", "invalid_request_error", "method_not_allowed"
            )
            reply = openai.render_error(err)
            reply.headers.append(("Allow", "POST"))
        else:
            try:
                reply = relay.handle(self.runtime, openai, endpoint, _inbound(environ), request_id)
            except GatewayError as err:
                reply = openai.render_error(err)
            except Exception:
                log.exception("unhandled error in POST %s (request %s)", environ["PATH_INFO"], request_id)
                reply = openai.render_error(
                    GatewayError(
                        500,
                        f"Internal error; quote request id {request_id}.",
                        "server_error",
                        "internal_error",
                    )
                )
        headers = reply.headers
        headers.append(("X-Request-Id", request_id))
        headers += CORS_HEADERS
        body = reply.body
        if isinstance(body, bytes):
            headers.append(("Content-Length", str(len(body))))
            body = [] if environ["REQUEST_METHOD"] == "HEAD" else [body]
        start_response(STATUS_LINES.get(reply.status) or f"{reply.status} Error", headers)
        return body


def _preflight(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
    asked = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")
    allowed = asked if asked and "\r" not in asked and "\n" not in asked else "Authorization, Content-Type"
    headers = [
        *PREFLIGHT_HEADERS,
        ("Access-Control-Allow-Headers", allowed),
        ("X-Request-Id", new_request_id()),
        ("Content-Length", "0"),
    ]
    start_response("204 No Content", headers)
    return []


def _inbound(environ: dict[str, Any]) -> relay.Inbound:
    length = environ.get("CONTENT_LENGTH")
    try:
        content_length = int(length) if length else None
    except ValueError:
        raise bad_request("Content-Length is not a number.") from None
    return relay.Inbound(
        EnvironHeaders(environ), environ.get("REMOTE_ADDR"), content_length, environ["wsgi.input"].read
    )


def _key():
    rt = current_app.extensions["relayhouse"]
    return rt, authenticate(rt.catalog, request.headers, request.remote_addr)


def _models_for(rt: Any, key: Any) -> list[str]:
    """The models this key can call: served for its group, allowed to the key, and priced (or free)."""
    snap = rt.catalog.snapshot
    free = rt.settings.allow_free_models or snap.settings.get("allow_free_models")
    return [
        m
        for m in snap.models_for(key.group)
        if (key.models is None or m in key.models) and (free or m in snap.prices)
    ]


def _model_object(rt: Any, model: str, group: str) -> dict[str, Any]:
    created, owner = 0, "relayhouse"
    for channel in rt.catalog.snapshot.channels.values():
        if model in channel.models and group in channel.groups:
            created, owner = channel.created, channel.type
            break
    return {"id": model, "object": "model", "created": created, "owned_by": owner}


@bp.get("/v1/models")
def list_models() -> Response:
    rt, key = _key()
    data = [_model_object(rt, m, key.group) for m in _models_for(rt, key)]
    return Response(orjson.dumps({"object": "list", "data": data}), content_type="application/json")


@bp.get("/v1/models/<path:model>")
def get_model(model: str) -> Response:
    rt, key = _key()
    if model not in _models_for(rt, key):
        raise GatewayError(
            404,
            f"The model `{model}` does not exist or you do not have access to it. "
            "GET /v1/models lists the models this key can use.",
            code="model_not_found",
            param="model",
        )
    return Response(orjson.dumps(_model_object(rt, model, key.group)), content_type="application/json")


def _not_implemented(**_: Any) -> Response:
    raise GatewayError(
        501, f"{request.path} is not supported by this gateway.", "invalid_request_error", "not_implemented"
    )


for _rule in (
    "/v1/images/variations",
    "/v1/files",
    "/v1/files/<path:rest>",
    "/v1/fine-tunes",
    "/v1/fine-tunes/<path:rest>",
):
    bp.add_url_rule(_rule, f"not_implemented_{_rule}", _not_implemented, methods=["GET", "POST", "DELETE"])


# -- the legacy billing endpoints that chat front ends call to show a key's balance -----------------
@bp.get("/dashboard/billing/subscription")
@bp.get("/v1/dashboard/billing/subscription")
def billing_subscription() -> Response:
    rt, key = _key()
    if key.spend_limit_micro_usd is not None:
        limit = micro_to_usd(key.spend_limit_micro_usd)
    else:
        limit = micro_to_usd(max(0, rt.wallets.balance(key.user_id)))
    expires = int(key.expires_at) if key.expires_at else 0
    body = {
        "object": "billing_subscription",
        "has_payment_method": True,
        "soft_limit_usd": limit,
        "hard_limit_usd": limit,
        "system_hard_limit_usd": limit,
        "access_until": expires,
    }
    return Response(orjson.dumps(body), content_type="application/json")


def _date(name: str, default: dt.date) -> dt.date:
    value = request.args.get(name)
    if not value:
        return default
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise bad_request(f"{name} must be a date such as 2026-01-31", name) from None


@bp.get("/dashboard/billing/usage")
@bp.get("/v1/dashboard/billing/usage")
def billing_usage() -> Response:
    _, key = _key()
    today = dt.datetime.now(dt.UTC).date()
    start = _date("start_date", today.replace(day=1))
    end = _date("end_date", today + dt.timedelta(days=1))
    spent = db.session.scalar(
        select(func.coalesce(func.sum(UsageLog.cost_micro_usd), 0)).where(
            UsageLog.key_id == key.id,
            UsageLog.created_at >= dt.datetime.combine(start, dt.time()),
            UsageLog.created_at < dt.datetime.combine(end, dt.time()),
        )
    )
    body = {"object": "list", "total_usage": int(spent or 0) / 10_000}  # micro-USD to US cents
    return Response(orjson.dumps(body), content_type="application/json")
