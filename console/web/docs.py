"""The docs pages. `/docs`: the endpoint reference, generated from the gateway's own route tables (the
relay's `gateway.frontends.v1.ROUTES` and the management API's `console.api.openapi.ROUTES`) so it cannot
drift from the code; the errors the gateway answers with, the per-key limits, and troubleshooting.
`/docs/api`: the OpenAPI document (`console.api.openapi.SPEC`) rendered on the server as a reference: each
operation's parameters, and the fields of its request and answer bodies, `$ref`s resolved and nested
objects and arrays spelled out (`data[].keys[].id`) with their types, bounds and choices.

Route summaries and parameter descriptions are English data in those tables; they are translated by
looking them up in the catalogs (`i18n/*/LC_MESSAGES/docs.po`), and tests/test_console_docs.py fails when
one of them has no translation. The schemas' own descriptions are reference text, quoted in English and
marked `lang="en"`; the page's labels around them are translated.
"""

from __future__ import annotations

import json
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
# Nesting levels shown below a body's own fields (`data[].keys[].id` is two); a deeper object shows its
# type only, as does a schema met again inside itself, so a self-referencing schema cannot recurse.
MAX_DEPTH = 4
EXCLUSIVE = (("exclusiveMinimum", ">"), ("exclusiveMaximum", "<"))


class Rule(NamedTuple):
    label: str  # translated; empty for a bound that needs no word (≥ 1)
    value: str  # as the document writes it, shown as code; empty after a label that heads the rules after it


class Field(NamedTuple):
    path: str  # `name`, `error.message`, `data[].id`
    depth: int  # 0: a field of the body itself
    kind: str  # `string`, `integer | null`, `string[]`, or a schema's name
    required: bool  # in a request: must be sent; in an answer: always present
    rules: list[Rule]
    description: str  # the document's own English


class Body(NamedTuple):
    name: str  # the schema's name in components/schemas; empty for an inline schema
    description: str
    fields: list[Field]


class Answer(NamedTuple):
    status: str
    description: str  # the document's English; empty where it only repeats the operation's summary
    body: Body | None
    headers: list[tuple[str, str]]  # (name, description)


class Parameter(NamedTuple):
    name: str
    where: str  # path, query
    required: bool
    kind: str
    rules: list[Rule]
    description: str


class Operation(NamedTuple):
    operation_id: str
    method: str
    path: str
    summary: str
    auth: str
    parameters: list[Parameter]
    body: Body | None  # None: no request body; no name and no fields: the provider's own JSON
    answers: list[Answer]  # the successes, with their bodies' fields
    errors: list[Answer]  # the error statuses, whose shared bodies the page shows once
    reference: str | None  # the provider's reference, for the relay's routes


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A `$ref` into the document's components as (its name, what it names); any other node as ("", it)."""
    target = node.get("$ref", "")
    if not target.startswith("#/components/"):
        return "", node
    _, _, section, name = target.split("/")
    return name, spec["components"][section][name]


def _kind(spec: dict[str, Any], schema: dict[str, Any]) -> str:
    """A schema's type in one line: a named schema by its name, an array as `item[]`, a choice as `a | b`."""
    name, schema = _resolve(spec, schema)
    if name:
        return name
    if "anyOf" in schema:
        return " | ".join(_kind(spec, choice) for choice in schema["anyOf"])
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    shown = []
    for kind in kinds:
        if kind == "array":
            item = _kind(spec, schema.get("items", {}))
            kind = f"({item})[]" if " | " in item else f"{item}[]"
        shown.append(kind)
    return " | ".join(shown) or "any"


def _value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _range(low: Any, high: Any) -> str | None:
    """`1–128`, `≥ 1`, `≤ 128`, or `51` for one value."""
    if low is not None and low == high:
        return _value(low)
    if low is not None and high is not None:
        return f"{_value(low)}–{_value(high)}"
    if low is not None:
        return f"≥ {_value(low)}"
    return None if high is None else f"≤ {_value(high)}"


def _rules(spec: dict[str, Any], schema: dict[str, Any]) -> list[Rule]:
    """What a value must be besides its type: bounds, lengths, choices, format, pattern, default."""
    name, schema = _resolve(spec, schema)
    if name:
        return []  # its fields say it
    choices = [(_kind(spec, choice), _rules(spec, choice)) for choice in schema.get("anyOf", [])]
    choices = [(kind, own) for kind, own in choices if own]
    if len(choices) == 1:
        rules = choices[0][1]
    else:  # each choice's own: `number:` ≤ 1000, `string:` Pattern ...
        rules = [rule for kind, own in choices for rule in (Rule("", f"{kind}:"), *own)]
    for low, high, label in (
        ("minimum", "maximum", ""),
        ("minLength", "maxLength", gettext("Length")),
        ("minItems", "maxItems", gettext("Items")),
    ):
        if (bound := _range(schema.get(low), schema.get(high))) is not None:
            rules.append(Rule(label, bound))
    rules += [Rule("", f"{sign} {_value(schema[key])}") for key, sign in EXCLUSIVE if key in schema]
    if "enum" in schema:
        rules.append(Rule(gettext("One of"), ", ".join(_value(v) for v in schema["enum"])))
    if "const" in schema:
        rules.append(Rule("", f"= {_value(schema['const'])}"))
    for key, label in (("format", gettext("Format")), ("pattern", gettext("Pattern"))):
        if key in schema:
            rules.append(Rule(label, schema[key]))
    if "default" in schema:
        rules.append(Rule(gettext("Default"), json.dumps(schema["default"], ensure_ascii=False)))
    values = schema.get("additionalProperties")
    if isinstance(values, dict):
        rules.append(Rule(gettext("Values"), _kind(spec, values)))
    items = schema.get("items")
    if isinstance(items, dict) and not _fields_of(spec, items) and (each := _rules(spec, items)):
        rules += [Rule(gettext("Each item:"), ""), *each]
    return rules


def _description(spec: dict[str, Any], schema: dict[str, Any]) -> str:
    return schema.get("description") or _resolve(spec, schema)[1].get("description", "")


def _fields_of(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    return _resolve(spec, schema)[1].get("properties", {})


def _items(spec: dict[str, Any], schema: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    """What an array holds, and its path (`data[]`, `grid[][]` for arrays of arrays, as deep as MAX_DEPTH);
    anything else as it is."""
    for _level in range(MAX_DEPTH):
        node = _resolve(spec, schema)[1]
        if "items" not in node or "properties" in node:
            break
        schema, path = node["items"], path + "[]"
    return schema, path


def fields(
    spec: dict[str, Any],
    schema: dict[str, Any],
    prefix: str = "",
    depth: int = 0,
    seen: frozenset = frozenset(),
) -> list[Field]:
    """A schema's fields, and those of the objects and arrays of objects inside them, in order."""
    name, node = _resolve(spec, schema)
    if name in seen or depth > MAX_DEPTH:
        return []
    seen |= {name} if name else set()
    required = set(node.get("required", []))
    found = []
    for field, sub in node.get("properties", {}).items():
        path = prefix + field
        found.append(
            Field(
                path, depth, _kind(spec, sub), field in required, _rules(spec, sub), _description(spec, sub)
            )
        )
        sub, path = _items(spec, sub, path)
        found += fields(spec, sub, path + ".", depth + 1, seen)
    return found


def _body(spec: dict[str, Any], node: dict[str, Any]) -> Body | None:
    """A request's or an answer's JSON body."""
    schema = node.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return None
    name, resolved = _resolve(spec, schema)
    return Body(name, resolved.get("description", ""), fields(spec, schema))


def _answer(spec: dict[str, Any], status: str, node: dict[str, Any], summary: str) -> Answer:
    _, node = _resolve(spec, node)  # the shared error answers are in components/responses
    description = node.get("description", "")
    headers = [(name, header.get("description", "")) for name, header in node.get("headers", {}).items()]
    return Answer(status, "" if description == summary else description, _body(spec, node), headers)


def _parameter(spec: dict[str, Any], p: dict[str, Any]) -> Parameter:
    return Parameter(
        p["name"],
        p["in"],
        p["required"],
        _kind(spec, p["schema"]),
        _rules(spec, p["schema"]),
        gettext(p["description"]) if p.get("description") else "",
    )


def _auth(path: str, op: dict[str, Any]) -> str:
    if not path.startswith("/api/"):
        return str(AUTH_LABELS["key"]())
    if not op["security"]:
        return str(AUTH_LABELS[None]())
    return str(AUTH_LABELS[openapi.ADMIN if op.get("description") == "Admins only." else openapi.USER]())


def _failed(status: str) -> bool:
    return status == "default" or int(status) >= 400


def operations(spec: dict[str, Any]) -> dict[str, list[Operation]]:
    """The document's operations grouped by tag, in the document's order."""
    tags: dict[str, list[Operation]] = {}
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            tag = op["tags"][0]
            answers = [_answer(spec, status, node, op["summary"]) for status, node in op["responses"].items()]
            protocol = tag.removeprefix("relay-")
            tags.setdefault(tag, []).append(
                Operation(
                    op["operationId"],
                    method.upper(),
                    path,
                    gettext(op["summary"]),
                    _auth(path, op),
                    [_parameter(spec, p) for p in op.get("parameters", [])],
                    _body(spec, op["requestBody"]) if "requestBody" in op else None,
                    [a for a in answers if not _failed(a.status)],
                    [a for a in answers if _failed(a.status)],
                    openapi.RELAY_REFERENCES.get(protocol) if tag.startswith("relay-") else None,
                )
            )
    return tags


def error_bodies(tags: dict[str, list[Operation]]) -> dict[str, Body]:
    """The named bodies of the error answers (the API's `Error`), each shown once on the page."""
    return {
        answer.body.name: answer.body
        for ops in tags.values()
        for op in ops
        for answer in op.errors
        if answer.body is not None and answer.body.name
    }


@bp.get("/docs/api")
def api_reference() -> str:
    spec = openapi.SPEC
    tags = operations(spec)
    return render_template(
        "docs_api.html",
        tags=tags,
        error_bodies=error_bodies(tags),
        version=spec["info"]["version"],
        servers=spec.get("servers", []),
        protocols=PROTOCOLS,
    )
