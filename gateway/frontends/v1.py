"""The relay's routes: OpenAI's `/v1`, Anthropic's `/v1/messages`, Gemini's `/v1beta/models/<model>:<action>`
(and `/v1/models/<model>:<action>`), the Responses API, the model lists in each protocol's shape, and the
legacy `/dashboard/billing/*` endpoints.

The relayed endpoints (`ENDPOINTS` and the Gemini actions) are served by `RelayRoutes`, straight from the
WSGI environ and ahead of Flask: they are the hot path, and need none of Flask's request machinery (no
session, no routing table, no context). Everything else is Flask's.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, NamedTuple

import orjson
from flask import Blueprint, Response, current_app, request
from sqlalchemy import func, select
from werkzeug.datastructures import EnvironHeaders

from gateway import relay
from gateway.auth import authenticate
from gateway.domain.channels import CHANNEL_TYPES
from gateway.domain.models import UsageLog, db
from gateway.domain.pricing import micro_to_usd
from gateway.neutral import GatewayError, bad_request, new_request_id
from gateway.protocols import anthropic, gemini, openai, responses

log = logging.getLogger("relayhouse")
bp = Blueprint("v1", __name__)

ENDPOINTS: dict[str, tuple[Any, str]] = {
    "/v1/chat/completions": (openai, "chat"),
    "/v1/completions": (openai, "completions"),
    "/v1/embeddings": (openai, "embeddings"),
    "/v1/moderations": (openai, "moderations"),
    "/v1/images/generations": (openai, "images"),
    "/v1beta/openai/chat/completions": (openai, "chat"),  # Gemini's own OpenAI-compatible path
    "/v1beta/openai/embeddings": (openai, "embeddings"),
    "/v1/messages": (anthropic, "messages"),
    "/v1/messages/count_tokens": (anthropic, "count_tokens"),
    "/v1/responses": (responses, "responses"),
    "/v1/responses/compact": (responses, "compact"),
    "/v1/responses/input_tokens": (responses, "input_tokens"),
}


class RelayRoute(NamedTuple):
    """One route API keys reach, for the documentation: its method, path, protocol and what it does."""

    method: str
    path: str
    protocol: str  # openai, responses, anthropic, gemini
    summary: str


ROUTES = [
    RelayRoute("POST", "/v1/chat/completions", "openai", "Chat completions, streamed or not, on any "
               "channel type"),
    RelayRoute("POST", "/v1/completions", "openai", "Legacy text completions (OpenAI-compatible channels)"),
    RelayRoute("POST", "/v1/embeddings", "openai", "Embeddings (OpenAI-compatible and Gemini channels)"),
    RelayRoute("POST", "/v1/moderations", "openai", "Moderations (OpenAI-compatible channels)"),
    RelayRoute("POST", "/v1/images/generations", "openai", "Image generation, streamed (gpt-image models) "
               "or not, on OpenAI-compatible channels"),
    RelayRoute("GET", "/v1/models", "openai", "The models this key can call; Anthropic's list shape with "
               "an `anthropic-version` header, Google's with a Google key header"),
    RelayRoute("GET", "/v1/models/{model}", "openai", "One model, in the same three shapes"),
    RelayRoute("POST", "/v1/messages", "anthropic", "Anthropic Messages, streamed or not, on any channel "
               "type (`?beta=true` accepted)"),
    RelayRoute("POST", "/v1/messages/count_tokens", "anthropic", "Input tokens: asked of an Anthropic "
               "channel, else estimated with the tokenizer"),
    RelayRoute("POST", "/v1/responses", "responses", "OpenAI Responses API, streamed or not: native on "
               "`openai` channels, converted to chat elsewhere; `store` and `previous_response_id` "
               "everywhere"),
    RelayRoute("GET", "/v1/responses/{response_id}", "responses", "A stored response"),
    RelayRoute("DELETE", "/v1/responses/{response_id}", "responses", "Delete a stored response"),
    RelayRoute("POST", "/v1/responses/{response_id}/cancel", "responses", "Cancel a background response"),
    RelayRoute("POST", "/v1/responses/compact", "responses", "Compact a conversation into a compaction item"),
    RelayRoute("POST", "/v1/responses/input_tokens", "responses", "Input tokens: asked of a native channel, "
               "else estimated"),
    RelayRoute("POST", "/v1beta/models/{model}:generateContent", "gemini", "Gemini generateContent on any "
               "channel type (also under /v1/models/)"),
    RelayRoute("POST", "/v1beta/models/{model}:streamGenerateContent", "gemini", "Streamed: SSE with "
               "`alt=sse`, else one JSON array (also under /v1/models/)"),
    RelayRoute("POST", "/v1beta/models/{model}:countTokens", "gemini", "Input tokens: asked of a Gemini "
               "channel, else estimated"),
    RelayRoute("POST", "/v1beta/models/{model}:embedContent", "gemini", "One embedding"),
    RelayRoute("POST", "/v1beta/models/{model}:batchEmbedContents", "gemini", "Several embeddings"),
    RelayRoute("GET", "/v1beta/models", "gemini", "The models this key can call, in Google's shape"),
    RelayRoute("GET", "/v1beta/models/{model}", "gemini", "One model, in Google's shape"),
    RelayRoute("GET", "/v1beta/openai/models", "openai", "The models, in OpenAI's shape"),
    RelayRoute("POST", "/v1beta/openai/chat/completions", "openai", "Chat completions, as Gemini's "
               "OpenAI-compatible path"),
    RelayRoute("POST", "/v1beta/openai/embeddings", "openai", "Embeddings, as Gemini's OpenAI-compatible "
               "path"),
    RelayRoute("GET", "/dashboard/billing/subscription", "openai", "The key's spend limit or the wallet "
               "balance, for chat front ends (also under /v1/)"),
    RelayRoute("GET", "/dashboard/billing/usage", "openai", "The key's spend in cents between two dates "
               "(also under /v1/)"),
]  # fmt: skip
GEMINI_ACTIONS = frozenset(
    ("generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents")
)
GEMINI_PREFIXES = ("/v1beta/models/", "/v1/models/")
STATUS_LINES = {int(s): f"{int(s)} {s.phrase}" for s in HTTPStatus}
PREFIXES = ("/v1/", "/v1beta/", "/dashboard/")  # what API keys reach; everything else is the console's
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
        params: dict[str, str] = {}
        found = ENDPOINTS.get(path)
        if found is None and path.startswith(GEMINI_PREFIXES) and ":" in path:
            model, _, action = path.partition("/models/")[2].rpartition(":")
            if action in GEMINI_ACTIONS and model:
                found, params = (gemini, action), {"model": model}
        if found is None:
            if (path in WITHOUT_V1 or path.startswith("/models/")) and not _from_a_browser_page(environ):
                return _missing_v1(environ, start_response)
            return self.app(environ, start_response)
        module, endpoint = found
        request_id = new_request_id()
        if environ["REQUEST_METHOD"] != "POST":
            err = GatewayError(
                405, f"Use POST for {environ['PATH_INFO']}.", "invalid_request_error", "method_not_allowed"
            )
            reply = module.render_error(err)
            reply.headers.append(("Allow", "POST"))
        else:
            try:
                reply = relay.handle(self.runtime, module, endpoint, _inbound(environ, params), request_id)
            except GatewayError as err:
                reply = module.render_error(err)
            except Exception:
                log.exception("unhandled error in POST %s (request %s)", environ["PATH_INFO"], request_id)
                reply = module.render_error(
                    GatewayError(
                        500,
                        f"Internal error; quote request id {request_id}.",
                        "server_error",
                        "internal_error",
                    )
                )
        headers = reply.headers
        headers.append(("X-Request-Id", request_id))
        if module is anthropic:
            headers.append(("request-id", request_id))  # where the anthropic SDK reads `e.request_id`
        headers += CORS_HEADERS
        body = reply.body
        if isinstance(body, bytes):
            headers.append(("Content-Length", str(len(body))))
            body = [] if environ["REQUEST_METHOD"] == "HEAD" else [body]
        start_response(STATUS_LINES.get(reply.status) or f"{reply.status} Error", headers)
        return body


# what an SDK calls when its base URL lacks `/v1` (a console page may share the name: see below)
WITHOUT_V1 = frozenset(
    (
        "/chat/completions",
        "/completions",
        "/embeddings",
        "/moderations",
        "/images/generations",
        "/responses",
        "/messages",
        "/models",
    )
)


def _from_a_browser_page(environ: dict[str, Any]) -> bool:
    """A browser opening a console page (such as /models), not an SDK that forgot `/v1`."""
    keyed = environ.get("HTTP_AUTHORIZATION") or environ.get("HTTP_X_API_KEY")
    return not keyed and "text/html" in environ.get("HTTP_ACCEPT", "")


def _missing_v1(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
    """A 404 that says what to fix, in the caller's protocol, readable by a browser app (CORS)."""
    path = environ.get("PATH_INFO", "")
    root = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', 'localhost')}"
    module = anthropic if path == "/messages" else openai
    err = GatewayError(
        404,
        f"There is no {path} here: the API lives under /v1. Set your base URL to {root}/v1 "
        f"(so this call goes to /v1{path}).",
        "invalid_request_error",
        "missing_v1",
    )
    reply = module.render_error(err)
    body = reply.body if isinstance(reply.body, bytes) else b""
    headers = [*reply.headers, ("X-Request-Id", new_request_id()), *CORS_HEADERS]
    headers.append(("Content-Length", str(len(body))))
    start_response(STATUS_LINES[404], headers)
    return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]


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


def _inbound(environ: dict[str, Any], params: dict[str, str]) -> relay.Inbound:
    length = environ.get("CONTENT_LENGTH")
    try:
        content_length = int(length) if length else None
    except ValueError:
        raise bad_request("Content-Length is not a number.") from None
    return relay.Inbound(
        EnvironHeaders(environ),
        environ.get("REMOTE_ADDR"),
        content_length,
        environ["wsgi.input"].read,
        environ.get("PATH_INFO", ""),
        environ.get("QUERY_STRING", ""),
        params,
    )


def protocol_of(path: str, headers: Any) -> Any:
    """The protocol a request to `path` speaks, for errors outside the relay (unknown paths, model
    lists): by its path, else by the headers only one SDK sends."""
    if path.startswith("/v1beta/") and not path.startswith("/v1beta/openai/"):
        return gemini
    if path.startswith("/v1/messages"):
        return anthropic
    if headers.get("anthropic-version"):
        return anthropic
    if headers.get("x-goog-api-key") or headers.get("x-goog-api-client"):
        return gemini
    return openai


def _key():
    rt = current_app.extensions["relayhouse"]
    return rt, authenticate(rt.catalog, request.headers, request.remote_addr, request.query_string.decode())


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
            created, owner = channel.created, CHANNEL_TYPES[channel.type].name
            break
    return {"id": model, "object": "model", "created": created, "owned_by": owner}


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), content_type="application/json")


def _anthropic_model(rt: Any, model: str, group: str) -> dict[str, Any]:
    created = _model_object(rt, model, group)["created"]
    return {
        "type": "model",
        "id": model,
        "display_name": model,
        "created_at": dt.datetime.fromtimestamp(created, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _unknown_model(model: str) -> GatewayError:
    return GatewayError(
        404,
        f"The model `{model}` does not exist or you do not have access to it. "
        "GET /v1/models lists the models this key can use.",
        code="model_not_found",
        param="model",
    )


@bp.get("/v1/models")
def list_models() -> Response:
    """OpenAI's list; Anthropic's (paged by `limit`, `after_id`, `before_id`) for a request with
    `anthropic-version`; Google's for one with a Google key header."""
    rt, key = _key()
    models = _models_for(rt, key)
    protocol = protocol_of(request.path, request.headers)
    if protocol is anthropic:
        return _anthropic_list(rt, key, models)
    if protocol is gemini:
        return _json({"models": [gemini.model_object(m) for m in models]})
    return _json({"object": "list", "data": [_model_object(rt, m, key.group) for m in models]})


def _anthropic_list(rt: Any, key: Any, models: list[str]) -> Response:
    limit = request.args.get("limit", "20")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise bad_request("limit must be an integer from 1 to 1000", "limit")
    after, before = request.args.get("after_id"), request.args.get("before_id")
    if after in models:
        models = models[models.index(after) + 1 :]
    if before in models:
        models = models[: models.index(before)]
    page = models[: int(limit)]
    return _json(
        {
            "data": [_anthropic_model(rt, m, key.group) for m in page],
            "has_more": len(models) > len(page),
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
        }
    )


@bp.get("/v1/models/<path:model>")
def get_model(model: str) -> Response:
    rt, key = _key()
    protocol = protocol_of(request.path, request.headers)
    model = model.removeprefix("models/") if protocol is gemini else model
    if model not in _models_for(rt, key):
        raise _unknown_model(model)
    if protocol is anthropic:
        return _json(_anthropic_model(rt, model, key.group))
    if protocol is gemini:
        return _json(gemini.model_object(model))
    return _json(_model_object(rt, model, key.group))


@bp.get("/v1beta/models")
def gemini_models() -> Response:
    rt, key = _key()
    return _json({"models": [gemini.model_object(m) for m in _models_for(rt, key)]})


@bp.get("/v1beta/models/<path:model>")
def gemini_model(model: str) -> Response:
    rt, key = _key()
    if model not in _models_for(rt, key):
        raise _unknown_model(model)
    return _json(gemini.model_object(model))


@bp.get("/v1beta/openai/models")
def gemini_openai_models() -> Response:
    rt, key = _key()
    return _json({"object": "list", "data": [_model_object(rt, m, key.group) for m in _models_for(rt, key)]})


@bp.route("/v1/responses/<response_id>", methods=["GET", "DELETE"])
def response_item(response_id: str) -> Response:
    rt, key = _key()
    return _reply(responses.manage(rt, key, request.method, response_id, ""))


@bp.post("/v1/responses/<response_id>/cancel")
def response_cancel(response_id: str) -> Response:
    rt, key = _key()
    return _reply(responses.manage(rt, key, "POST", response_id, "cancel"))


def _reply(reply: Any) -> Response:
    return Response(reply.body, reply.status, reply.headers)


def _not_implemented(**_: Any) -> Response:
    raise GatewayError(
        501, f"{request.path} is not supported by this gateway.", "invalid_request_error", "not_implemented"
    )


for _rule in (
    "/v1/images/edits",
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
