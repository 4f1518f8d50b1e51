"""The docs pages. `/docs`: the endpoint reference, generated from the gateway's own route tables (the
relay's `gateway.frontends.v1.ROUTES` and the management API's `console.api.openapi.ROUTES`) so it cannot
drift from the code; the errors the gateway answers with, the per-key limits, and troubleshooting.
`/docs/api`: the management API's OpenAPI document (`console.api.openapi.SPEC`), rendered on the server.

Route summaries and parameter descriptions are English data in those tables; they are translated by
looking them up in the catalogs (`i18n/*/LC_MESSAGES/docs.po`), and tests/test_console_docs.py fails when
one of them has no translation.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from flask import Blueprint, render_template, request
from flask_babel import gettext
from flask_babel import lazy_gettext as _
from markupsafe import Markup, escape

from console import web
from console.api import openapi
from console.web.home import base_url
from gateway.domain.keys import LIMIT_FIELDS
from gateway.frontends import v1

bp = Blueprint("docs", __name__)

PROTOCOLS = {  # the relay's client protocols, as v1.ROUTES names them
    "openai": "OpenAI",
    "responses": "OpenAI Responses",
    "anthropic": "Anthropic Messages",
    "gemini": "Google Gemini",
}
AUTH_LABELS = {  # who may call a route: openapi.Route.auth, and "key" for the relay's routes
    None: lambda: _("Public"),
    openapi.USER: lambda: _("Signed-in user"),
    openapi.ADMIN: lambda: _("Admin"),
    "key": lambda: _("API key"),
}


class Endpoint(NamedTuple):
    method: str
    path: str
    auth: str
    summary: str
    protocol: str = ""


class ErrorRow(NamedTuple):
    status: int
    codes: tuple[str, ...]  # the `code` values the gateway sends with this status
    meaning: Any  # lazy strings: translated when shown
    fix: Any


# Every status the relay and its HTTP server answer with (gateway/relay.py, auth.py, billing.py, limits.py,
# routing.py, upstream.py, serving.py, frontends/v1.py); 499 is only ever written to the usage log.
ERRORS = (
    ErrorRow(
        400,
        ("invalid_request", "unsupported_endpoint"),
        _("The request is malformed: a field is missing or invalid, or no channel serves this model on this "
          "endpoint."),
        _("Read error.message and error.param, and check the body against the provider's API reference."),
    ),
    ErrorRow(
        401,
        ("invalid_api_key", "key_disabled", "key_expired"),
        _("No API key, an unknown key, or a key that is disabled or has expired."),
        _("Send the key as Authorization: Bearer sk-... (or x-api-key, x-goog-api-key); create a new key "
          "if this one is disabled or expired."),
    ),
    ErrorRow(
        402,
        ("insufficient_quota", "key_spend_limit_reached"),
        _("The wallet balance is too low for the request, or the key has reached its spend limit."),
        _("Top up or redeem a code on the Wallet page, or ask an admin for credit; raise the key's spend "
          "limit on the API keys page."),
    ),
    ErrorRow(
        403,
        ("user_disabled", "ip_not_allowed", "model_not_allowed", "model_not_priced"),
        _("The key may not do this: its account is disabled, it is used from an address it does not "
          "allow, it may not use this model, or the model has no price yet."),
        _("Check the key's models and allowed addresses; ask an admin to enable the account or to price "
          "the model."),
    ),
    ErrorRow(
        404,
        ("model_not_found", "missing_v1"),
        _("The model is unknown to your group, or the path does not exist (often a base URL without /v1)."),
        _("List the models your key can call with GET /v1/models, and end the base URL with /v1."),
    ),
    ErrorRow(
        405,
        ("method_not_allowed",),
        _("The endpoint takes another HTTP method."),
        _("Use the method the endpoint reference lists."),
    ),
    ErrorRow(
        408,
        ("request_timeout",),
        _("The request's head or body arrived too slowly."),
        _("Check the network between the client and the gateway; send the body without pauses."),
    ),
    ErrorRow(
        413,
        ("request_too_large",),
        _("The body is larger than the gateway accepts (MAX_BODY_MB)."),
        _("Send smaller images or files, or ask an admin to raise MAX_BODY_MB."),
    ),
    ErrorRow(
        414,
        ("url_too_long",),
        _("The URL is too long."),
        _("Send the parameters in the body instead of the query string."),
    ),
    ErrorRow(
        429,
        ("rate_limit_exceeded", "token_cap_reached", "upstream_rate_limited"),
        _("A limit of the key was reached (requests, tokens, requests in flight or the monthly token "
          "allowance), or every upstream is rate limited."),
        _("Wait the seconds the Retry-After header gives, then retry; ask an admin to raise the key's "
          "limits."),
    ),
    ErrorRow(
        499,
        (),
        _("The client closed the connection before the answer ended. It only appears in the usage log."),
        _("Nothing, unless your client gives up too early: raise its timeout."),
    ),
    ErrorRow(
        500,
        (),
        _("An error inside the gateway."),
        _("Retry; if it persists, give an admin the X-Request-Id of the answer."),
    ),
    ErrorRow(
        501,
        ("not_implemented",),
        _("The gateway does not offer this endpoint of the provider's API."),
        _("Use one of the endpoints listed above."),
    ),
    ErrorRow(
        502,
        ("upstream_error", "upstream_stream_cut"),
        _("Every upstream channel failed, or a stream broke off midway."),
        _("Retry; an admin can test the channels and read their last error."),
    ),
    ErrorRow(
        503,
        ("no_channel_available", "response_channel_unavailable"),
        _("No channel can take the request now: they are disabled, cooling down or busy."),
        _("Retry after the Retry-After header's seconds; an admin checks the channels' health."),
    ),
    ErrorRow(
        504,
        ("upstream_timeout",),
        _("The upstream did not answer in time."),
        _("Retry, ask for less output, or ask an admin to raise the channel's timeout."),
    ),
)  # fmt: skip

LIMITS = {  # gateway.domain.keys.LIMIT_FIELDS, as gateway/limits.py applies them
    "requests_per_minute": _("Requests in any sliding minute."),
    "requests_per_hour": _("Requests in any sliding hour."),
    "tokens_per_minute": _("Tokens (prompt and output) in any sliding minute."),
    "tokens_per_month": _("Tokens in the calendar month (UTC); the wait ends when the next month starts."),
    "max_concurrent": _("Requests in flight at the same time."),
}


@bp.app_template_filter("ticks")
def ticks(text: str) -> Markup:
    """`code` in a description as <code>code</code>, the rest escaped."""
    parts = str(escape(text)).split("`")
    return Markup("".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts)))


def relay_endpoints(protocol: str | None = None) -> list[Endpoint]:
    auth = str(AUTH_LABELS["key"]())
    return [
        Endpoint(route.method, route.path, auth, gettext(route.summary), route.protocol)
        for route in v1.ROUTES
        if protocol is None or route.protocol == protocol
    ]


def api_endpoints() -> list[Endpoint]:
    return [
        Endpoint(route.method.upper(), "/api" + route.path, str(AUTH_LABELS[route.auth]()),
                 gettext(route.summary))
        for route in openapi.ROUTES
    ]  # fmt: skip


@bp.get("/docs")
def docs() -> str:
    protocol = request.args.get("protocol") or None
    if protocol not in PROTOCOLS:
        protocol = None
    context = {"relay": relay_endpoints(protocol), "protocol": protocol, "protocols": PROTOCOLS}
    if web.htmx:
        return render_template("partials/docs_endpoints.html", **context)
    base = base_url()
    return render_template(
        "docs.html",
        **context,
        api=api_endpoints(),
        errors=ERRORS,
        limits=[(name, LIMITS[name]) for name in LIMIT_FIELDS],
        base_url=base,
        root=base.removesuffix("/v1"),
    )


# -- /docs/api: the OpenAPI document -----------------------------------------------------------------
class Parameter(NamedTuple):
    name: str
    where: str  # path, query
    required: bool
    kind: str
    description: str


class Operation(NamedTuple):
    operation_id: str
    method: str
    path: str
    summary: str
    auth: str
    parameters: list[Parameter]
    body: str | None  # the request body's schema name
    answers: list[tuple[str, str]]  # (status, schema name or "")
    reference: str | None  # the provider's reference, for the relay's routes


def _schema_name(node: dict[str, Any]) -> str:
    schema = node.get("content", {}).get("application/json", {}).get("schema", {})
    return schema.get("$ref", "").rsplit("/", 1)[-1]


def _kind(schema: dict[str, Any]) -> str:
    kind = schema.get("type", "")
    kinds = [kind] if isinstance(kind, str) else list(kind)
    return " | ".join(kinds + ([f"enum: {', '.join(schema['enum'])}"] if "enum" in schema else []))


def _auth(path: str, op: dict[str, Any]) -> str:
    if not path.startswith("/api/"):
        return str(AUTH_LABELS["key"]())
    if not op["security"]:
        return str(AUTH_LABELS[None]())
    return str(AUTH_LABELS[openapi.ADMIN if op.get("description") == "Admins only." else openapi.USER]())


def operations(spec: dict[str, Any]) -> dict[str, list[Operation]]:
    """The document's operations grouped by tag, in the document's order."""
    tags: dict[str, list[Operation]] = {}
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            tag = op["tags"][0]
            parameters = [
                Parameter(p["name"], p["in"], p["required"], _kind(p["schema"]),
                          gettext(p["description"]) if p.get("description") else "")
                for p in op.get("parameters", [])
            ]  # fmt: skip
            answers = [(status, _schema_name(answer)) for status, answer in op["responses"].items()]
            body = _schema_name(op["requestBody"]) if "requestBody" in op else None
            protocol = tag.removeprefix("relay-")
            tags.setdefault(tag, []).append(
                Operation(
                    op["operationId"],
                    method.upper(),
                    path,
                    gettext(op["summary"]),
                    _auth(path, op),
                    parameters,
                    body or ("" if "requestBody" in op else None),
                    answers,
                    openapi.RELAY_REFERENCES.get(protocol) if tag.startswith("relay-") else None,
                )
            )
    return tags


@bp.get("/docs/api")
def api_reference() -> str:
    spec = openapi.SPEC
    return render_template(
        "docs_api.html",
        tags=operations(spec),
        version=spec["info"]["version"],
        servers=spec.get("servers", []),
        protocols=PROTOCOLS,
    )
