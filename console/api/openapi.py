"""`GET /api/openapi.json`: the OpenAPI 3.1 document of the management API.

The document is plain data: `SCHEMAS` (the bodies, reused by `$ref`), `RESPONSES` (the error answers) and
`ROUTES` (one row per route and method; `operation` turns a row into its OpenAPI form). Flask's `<int:id>`
is written `{id}`. Keep it in step with the views: `tests/test_api.py` fails when a route is missing here,
and checks every answer it gets against the schema documented for its status.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, NamedTuple

from flask import Response

from console.api import MAX_PAGE, MAX_PER_PAGE, bp
from gateway import __version__
from gateway.domain import accounts, bounds, channels, keys, ledger, pricing, settings
from gateway.domain.keys import LIMIT_FIELDS
from gateway.domain.models import ApiKey
from gateway.frontends import v1

Schema = dict[str, Any]


# -- small builders for repeated shapes -------------------------------------------------------------
def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def typed(kind: str | list[str], description: str = "", **extra: Any) -> Schema:
    return {"type": kind, **({"description": description} if description else {}), **extra}


def nullable(kind: str, description: str = "", **extra: Any) -> Schema:
    return typed([kind, "null"], description, **extra)


def array(items: Schema, description: str = "", nulls: bool = False) -> Schema:
    return typed(["array", "null"] if nulls else "array", description, items=items)


def record(description: str, **props: Schema) -> Schema:
    """An answer object: every field is always present, and no other field is."""
    return {
        "type": "object",
        "description": description,
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


def fields(description: str, required: tuple[str, ...] = (), **props: Schema) -> Schema:
    """A request body: only `required` must be sent; fields left out keep their value or default. Any
    other field is refused with a 400 naming it."""
    schema: Schema = {
        "type": "object",
        "description": description,
        "properties": props,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


def extend(schema: Schema, description: str, **props: Schema) -> Schema:
    """`schema` with more always-present fields."""
    return {
        **schema,
        "description": description,
        "properties": {**schema["properties"], **props},
        "required": [*schema["required"], *props],
    }


def listing(item: str) -> Schema:
    return record(f"All {item} objects, oldest first.", data=array(ref(item)))


STR = typed("string")
INT = typed("integer")
TIME = typed("string", "UTC time, ISO 8601 with a `Z`.", format="date-time")
MICRO = typed("integer", "Integer micro-USD (1 USD = 1,000,000).")
STRINGS = array(STR)
INT32 = {"minimum": bounds.INT32[0], "maximum": bounds.INT32[1]}
ID = typed("integer", minimum=1, maximum=bounds.INT32[1])


NO_NUL = "[^\\u0000]*"


def text(max_length: int, description: str = "", min_length: int = 0, nonblank: bool = False) -> Schema:
    """A string of at most `max_length` characters (the column's length), without NUL characters."""
    pattern = f"^{NO_NUL}[^\\s\\u0000]{NO_NUL}$" if nonblank else f"^{NO_NUL}$"
    extra: Schema = {"maxLength": max_length, "pattern": pattern}
    if min_length:
        extra["minLength"] = min_length
    return typed("string", description, **extra)


def names(max_length: int, description: str = "", nulls: bool = False) -> Schema:
    """A list of non-blank names, each at most `max_length` characters."""
    return array(text(max_length, min_length=1, nonblank=True), description, nulls)


def decimal(description: str, low: Decimal, high: Decimal, nulls: bool = False) -> Schema:
    """A JSON number, or a decimal string such as "0.15", with at most 6 decimal places."""
    number = {"type": "number", "minimum": float(low), "maximum": float(high)}
    sign = "-?" if low < 0 else ""
    digits = len(str(int(high))) - 1  # the string form stays below `high`
    string = {"type": "string", "pattern": f"^{sign}[0-9]{{1,{digits}}}(\\.[0-9]{{1,6}})?$"}
    return {
        "description": f"{description} From {low} to {high}, with at most 6 decimal places.",
        "anyOf": [number, string, {"type": "null"}] if nulls else [number, string],
    }


USER_ROLES = list(accounts.ROLES)
ACTIVE = list(accounts.STATUSES)  # users and API keys: active, disabled
MODEL = text(pricing.MODEL_MAX, min_length=1)
KEY_FIELDS: dict[str, Schema] = {
    "name": text(keys.NAME_MAX, "A label."),
    "status": typed("string", enum=ACTIVE),
    "expires_at": {
        "description": "ISO 8601 time (UTC unless an offset is given) or Unix seconds, from 1970 to 9999; "
        "null: never.",
        "anyOf": [
            typed("string", format="date-time", maxLength=64),
            typed("number", minimum=0, maximum=253402214399),
            typed("null"),
        ],
    },
    "spend_limit_usd": decimal(
        "Most this key may spend, in USD; null: no limit.", Decimal(0), pricing.USD_MAX, nulls=True
    ),
    "models": names(keys.MODEL_MAX, "Models this key may use; null or []: all of its group's models.", True),
    "allowed_ips": names(
        keys.NETWORK_MAX, "IP addresses or CIDR ranges the key may be used from; null: anywhere.", True
    ),
    **{
        name: nullable(
            "integer", "null: no limit.", minimum=1, maximum=bounds.integer_range(getattr(ApiKey, name))[1]
        )
        for name in LIMIT_FIELDS
    },
}
CHANNEL_FIELDS: dict[str, Schema] = {
    "name": text(channels.NAME_MAX, min_length=1, nonblank=True),
    "type": typed(
        "string",
        "The upstream's kind: "
        + ", ".join(f"{t.name} ({t.protocol} protocol)" for t in channels.CHANNEL_TYPES.values())
        + ".",
        enum=list(channels.CHANNEL_TYPES),
        default="openai",
    ),
    "base_url": text(
        channels.BASE_URL_MAX,
        "http(s) URL of the API root as the type's SDK takes it: https://api.openai.com/v1, "
        "https://api.anthropic.com, https://generativelanguage.googleapis.com, "
        "https://NAME.openai.azure.com. Default: the type's own (required for azure). Moving it to another "
        "scheme, host "
        "or port needs `keys` in the same request: the stored keys are never sent to a new host.",
        min_length=1,
    )
    | {"format": "uri", "pattern": f"^https?://[^/?#\\s\\u0000]+{NO_NUL}$"},
    "keys": names(
        channels.KEY_MAX, "Upstream keys; they are stored encrypted and never shown again. Replaces all keys."
    )
    | {"minItems": 1},
    "models": names(channels.MODEL_MAX, "Public model names this channel serves."),
    "model_mapping": typed(
        "object",
        "Public model name to upstream model name.",
        additionalProperties=text(channels.MODEL_MAX, min_length=1),
        propertyNames=text(channels.MODEL_MAX, min_length=1),
        default={},
    ),
    "groups": names(channels.GROUP_MAX, 'User groups that may use the channel (default ["default"]).'),
    "priority": typed("integer", "Higher priorities are tried first.", default=0, **INT32),
    "weight": typed(
        "integer", "Share of traffic within one priority.", minimum=1, maximum=bounds.INT32[1], default=1
    ),
    "status": typed(
        "string", 'Sets status_reason ("disabled by an admin" or empty).', enum=["enabled", "disabled"]
    ),
    "timeout_s": nullable(
        "number",
        "Upstream timeout in seconds; null: the gateway default.",
        exclusiveMinimum=0,
        maximum=channels.TIMEOUT_MAX_S,
    ),
    "test_model": text(channels.MODEL_MAX, "Model used by the channel test (default: the first model)."),
    "settings": typed(
        "object",
        "Per-type options: `responses` (`native` passes /v1/responses through, `convert` turns it into chat "
        "completions; default native for type openai only), `api_version` (azure; default "
        "2024-10-21), `max_output_tokens` (the most output a request converted from another protocol may "
        "ask of this upstream: Claude Code asks for 64000).",
        properties={
            "responses": typed("string", enum=["native", "convert"]),
            "api_version": text(64, min_length=1),
            "max_output_tokens": typed("integer", minimum=1, maximum=bounds.INT32[1]),
        },
        additionalProperties=False,
        default={},
    ),
}
PRICE_FIELDS = {
    "input_per_mtok_usd": typed("number", "USD per 1M prompt tokens."),
    "output_per_mtok_usd": typed("number", "USD per 1M completion tokens."),
    "cached_input_per_mtok_usd": nullable(
        "number", "USD per 1M cached prompt tokens (cache reads); null: the input price."
    ),
    "cache_write_per_mtok_usd": nullable(
        "number", "USD per 1M prompt tokens written to the cache (Anthropic); null: the input price."
    ),
    "per_request_usd": nullable("number", "A fixed price per request; when set, tokens are not billed."),
}

SETTING_FIELDS: dict[str, Schema] = {
    "allow_free_models": typed("boolean", "Serve models that have no price, at no charge."),
    "public_url": typed(
        "string",
        "The base URL the console shows, without /v1 (empty: the request's host).",
        maxLength=settings.URL_MAX,
    ),
    "registration": typed("boolean", "Anyone may create an account from the console."),
    "default_group": text(settings.GROUP_MAX, "The group of new accounts (empty: default)."),
    "retry_attempts": nullable(
        "integer",
        "Channels tried per request (null: RETRY_ATTEMPTS).",
        minimum=1,
        maximum=settings.RETRIES_MAX,
    ),
}
API_KEY = record(
    "An API key for /v1. The full key is never shown again after creation, only `prefix`.",
    id=INT,
    user_id=INT,
    name=STR,
    prefix=typed("string", "The first 7 and last 4 characters, such as `sk-AbCd...wXyZ`."),
    status=typed("string", enum=ACTIVE),
    expires_at=nullable("string", format="date-time"),
    spend_limit_usd=nullable("number"),
    spent_usd=typed("number"),
    spent_micro_usd=MICRO,
    models=array(STR, nulls=True),
    allowed_ips=array(STR, nulls=True),
    **{name: nullable("integer") for name in LIMIT_FIELDS},
    month_tokens=typed("integer", "Tokens used this calendar month (UTC)."),
    last_used_at=nullable("string", format="date-time"),
    created_at=TIME,
)

SCHEMAS: dict[str, Schema] = {
    "Error": record(
        "Every error answer.",
        error=record(
            "What went wrong.",
            message=STR,
            type=typed("string", examples=["invalid_request_error", "permission_denied"]),
            param=nullable("string", "The body field or query parameter at fault."),
            code=nullable("string", examples=["unauthenticated", "admin_required", "not_found", "conflict"]),
        ),
    ),
    "Document": typed("object", "An OpenAPI 3.1 document."),
    "Status": record(
        "Liveness of the gateway.",
        status=typed("string", "degraded when the database does not answer.", enum=["ok", "degraded"]),
        version=STR,
        started_at=TIME,
        uptime_seconds=INT,
        database=typed("string", enum=["ok", "error"]),
        channels=record("Channel counts.", total=INT, enabled=INT, half_open=INT, auto_disabled=INT),
    ),
    "Login": fields(
        "Console credentials. After 5 failed logins of one username (or 20 from one address) within 15 "
        "minutes, logins are refused (429) for a time that doubles with every further failure.",
        ("username", "password"),
        username=STR,
        password=STR,
    ),
    "Logout": fields("Nothing: an empty JSON object."),
    "LoggedOut": record("The session cookie is cleared.", ok=typed("boolean", const=True)),
    "AccessToken": record(
        "A new access token for `Authorization: Bearer`; it replaces the caller's previous one. Logging "
        "out or a new password revokes it.",
        token=typed("string", "Shown once.", pattern="^rh-"),
        expires_at={**TIME, "description": "When it stops working (`TOKEN_TTL_DAYS` after it was made)."},
    ),
    "User": record(
        "An account.",
        id=INT,
        username=STR,
        role=typed("string", enum=USER_ROLES),
        group=typed("string", "Pricing and channel group."),
        status=typed("string", enum=ACTIVE),
        balance_micro_usd=MICRO,
        created_at=TIME,
    ),
    "UserList": listing("User"),
    "UserCreate": fields(
        "A new account. Only the root admin may create another root.",
        ("username", "password"),
        username=text(
            accounts.USERNAME_MAX, "Printable; surrounding spaces are removed.", min_length=1, nonblank=True
        ),
        password=text(accounts.PASSWORD_MAX, min_length=accounts.PASSWORD_MIN),
        role=typed("string", enum=USER_ROLES, default="user"),
        group=text(accounts.GROUP_MAX, min_length=1) | {"default": "default"},
    ),
    "UserUpdate": fields(
        "Changes to an account. Disabling it stops its API keys (403) and its logins; a new password ends "
        "its console sessions and revokes its access token. The root admin cannot demote or disable "
        "itself, and the last active root cannot be demoted or disabled (400).",
        role=typed("string", enum=USER_ROLES),
        group=text(accounts.GROUP_MAX, min_length=1),
        status=typed("string", enum=ACTIVE),
        password=text(accounts.PASSWORD_MAX, min_length=accounts.PASSWORD_MIN),
    ),
    "ApiKey": API_KEY,
    "KeyList": listing("ApiKey"),
    "ApiKeyCreated": extend(
        API_KEY,
        "The new key, with the full secret in `key` (shown once).",
        key=typed("string", "`sk-` and 48 URL-safe characters.", pattern="^sk-", minLength=51, maxLength=51),
    ),
    "ApiKeyCreate": fields(
        "A new key. `user_id` (admins only) makes it for another user; the default is the caller.",
        user_id=ID,
        **KEY_FIELDS,
    ),
    "ApiKeyUpdate": fields("Changes to a key.", **KEY_FIELDS),
    "ChannelKey": record(
        "An upstream key, as far as it is shown.",
        id=INT,
        hint=typed("string", "`...` and the last four characters."),
        status=typed(
            "string",
            "set_aside: the upstream rejected it; the probe retries it.",
            enum=["active", "set_aside"],
        ),
        status_reason=STR,
    ),
    "Channel": record(
        "An upstream endpoint.",
        id=INT,
        name=STR,
        type=typed("string", enum=list(channels.CHANNEL_TYPES)),
        base_url=STR,
        models=STRINGS,
        model_mapping=typed("object", additionalProperties=STR),
        groups=STRINGS,
        priority=INT,
        weight=INT,
        status=typed(
            "string",
            "auto_disabled: by the relay, when its failure rate over a window trips; half_open: answering "
            "again, on trial with a little traffic until a few successes make it enabled.",
            enum=list(channels.STATUSES),
        ),
        status_reason=STR,
        timeout_s=nullable("number"),
        test_model=STR,
        settings=typed("object", additionalProperties={"type": ["string", "integer"]}),
        keys=array(ref("ChannelKey")),
        total_requests=INT,
        total_failures=INT,
        last_latency_ms=nullable("integer"),
        last_error=STR,
        created_at=TIME,
    ),
    "ChannelList": listing("Channel"),
    "ChannelCreate": fields("A new channel.", ("name", "keys", "models"), **CHANNEL_FIELDS),
    "ChannelUpdate": fields("Changes to a channel.", **CHANNEL_FIELDS),
    "ChannelTest": fields(
        "Which model to try.",
        model=text(channels.MODEL_MAX, "Default: test_model, else the first model.", min_length=1),
    ),
    "ChannelTestResult": record(
        "One tiny request to the endpoint the model serves (chat, completions, embeddings or moderations; "
        "an image model is looked up with GET /models/{model}, since an image costs money) through the "
        "channel with its first key. A success puts an auto-disabled channel on trial "
        "(half_open).",
        ok=typed("boolean"),
        status=nullable("integer", "The upstream's HTTP status, or the gateway's for a transport failure."),
        error=nullable("string"),
        error_code=nullable(
            "string",
            "Why it failed: upstream_answered (the upstream answered with an error: `status` and `error` are "
            "its own), key_rejected (it refused the key: 401, or its quota is spent), else the gateway's "
            "code, such as upstream_timeout, upstream_unreachable, bad_upstream_response, "
            "unsupported_endpoint, no_keys or no_such_channel.",
        ),
        latency_ms=INT,
        model=nullable("string"),
    ),
    "Deleted": record("Deleted.", id=INT, deleted=typed("boolean", const=True)),
    "Price": record("The price of one model.", model=STR, **PRICE_FIELDS, updated_at=TIME),
    "PriceList": listing("Price"),
    "PriceWrite": {
        **fields(
            "The whole price (PUT replaces it): fields left out become 0 (input, output) or null (others).",
            **{
                name: decimal("USD.", Decimal(0), pricing.PRICE_MAX, nulls=True)
                | {
                    "description": f"{PRICE_FIELDS[name]['description']} From 0 to {pricing.PRICE_MAX}, "
                    "with at most 6 decimal places."
                }
                for name in PRICE_FIELDS
            },
        ),
        "additionalProperties": False,
    },
    "PriceDeleted": record("Deleted.", model=STR, deleted=typed("boolean", const=True)),
    "Group": record(
        "A user group and its price multiplier.",
        name=STR,
        multiplier=typed("string", 'Exact decimal text, such as "1.5".'),
    ),
    "GroupList": listing("Group"),
    "GroupWrite": fields(
        "The multiplier (default 1).",
        multiplier=decimal("The price multiplier.", Decimal(0), pricing.MULTIPLIER_MAX) | {"default": "1"},
    ),
    "Settings": record("Runtime settings.", **SETTING_FIELDS),
    "SettingsUpdate": {**fields("Settings to change.", **SETTING_FIELDS), "additionalProperties": False},
    "RedemptionCreate": fields(
        "New one-time redemption codes.",
        ("amount_usd",),
        amount_usd=decimal("Credit per code in USD; must be positive.", Decimal(0), pricing.USD_MAX),
        count=typed("integer", minimum=1, maximum=1000, default=1),
    ),
    "RedemptionCodes": record(
        "The codes, shown once.", codes=array(typed("string", pattern="^rh-")), amount_usd=typed("number")
    ),
    "Redeem": fields("A redemption code.", ("code",), code=text(ledger.CODE_MAX, min_length=1)),
    "Redeemed": record("The wallet after the credit.", amount_micro_usd=MICRO, balance_micro_usd=MICRO),
    "LedgerEntry": record(
        "One change of a balance.",
        id=INT,
        kind=typed("string", enum=list(ledger.KINDS)),
        amount_micro_usd=typed("integer", "Signed micro-USD."),
        reason=STR,
        request_id=nullable("string", "The relayed request a charge belongs to."),
        created_at=TIME,
    ),
    "Wallet": record(
        "A balance and its ledger, newest entries first.",
        user_id=INT,
        balance_micro_usd=MICRO,
        balance_usd=typed("number"),
        ledger=array(ref("LedgerEntry")),
        total=typed("integer", "Entries in the whole ledger."),
    ),
    "WalletAdjust": fields(
        "A credit (positive) or debit (negative).",
        ("amount_usd",),
        amount_usd=decimal("Signed USD; must not be zero.", -pricing.USD_MAX, pricing.USD_MAX),
        reason=text(ledger.REASON_MAX),
        kind=typed(
            "string",
            "Default: topup when positive, adjustment when negative.",
            enum=["topup", "adjustment", "refund"],
        ),
    ),
    "WalletAdjusted": record(
        "The entry written and the new balance.", user_id=INT, amount_micro_usd=MICRO, balance_micro_usd=MICRO
    ),
    "UsageLog": record(
        "One relayed request.",
        id=INT,
        request_id=STR,
        created_at=TIME,
        user_id=nullable("integer"),
        key_id=nullable("integer"),
        channel_id=nullable("integer", "null when no channel was tried."),
        endpoint=typed(
            "string",
            "The endpoint in the client's protocol.",
            examples=["chat", "completions", "embeddings", "messages", "streamGenerateContent", "responses"],
        ),
        model=STR,
        upstream_model=STR,
        stream=typed("boolean"),
        status=typed("integer", "The HTTP status answered to the client."),
        prompt_tokens=INT,
        completion_tokens=INT,
        cached_tokens=typed(
            "integer", "Prompt tokens read from the upstream's cache (part of prompt_tokens)."
        ),
        cache_write_tokens=typed(
            "integer", "Prompt tokens written to the upstream's cache (part of prompt_tokens)."
        ),
        reasoning_tokens=typed("integer", "Output tokens spent on reasoning (part of completion_tokens)."),
        protocol=typed(
            "string", "The client's protocol.", enum=["openai", "responses", "anthropic", "gemini"]
        ),
        channel_type=typed("string", "The type of the channel that answered; empty when none did."),
        cost_micro_usd=MICRO,
        usage_source=typed("string", enum=["upstream", "estimated"]),
        latency_ms=INT,
        ttft_ms=nullable("integer", "Time to the upstream's first byte; null when none came."),
        attempts=typed("integer", "Upstream calls made (0: refused before any)."),
        error=nullable("string"),
    ),
    "DeadLetter": record(
        "A usage record the database refused even after its fields were cut to fit: neither its log row "
        "nor its charge was written.",
        id=INT,
        request_id=STR,
        created_at=TIME,
        error=typed("string", "The database's error."),
        record=typed("string", "The record as JSON text, as the relay settled it."),
    ),
    "DeadLetterPage": record(
        "One page of set-aside records, newest first.",
        data=array(ref("DeadLetter")),
        total=INT,
        page=INT,
        per_page=INT,
    ),
    "LogPage": record(
        "One page of rows, newest first.",
        data=array(ref("UsageLog")),
        total=typed("integer", "Rows matching the filters."),
        page=INT,
        per_page=INT,
    ),
}


def _error(description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": ref("Error")}}}


RESPONSES: dict[str, Schema] = {
    "400": _error("Invalid parameters or body; `error.param` names the field at fault."),
    "401": _error("Not logged in, or an unknown access token, or a disabled account."),
    "403": _error("Not allowed: this needs an admin (or, for root accounts, the root admin)."),
    "404": _error("No such object, or it belongs to another user."),
    "409": _error("The username is taken."),
    "415": _error("A cookie-authenticated change must send a JSON body (Content-Type: application/json)."),
    "429": {
        **_error("Too many failed logins: wait `Retry-After` seconds."),
        "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": INT}},
    },
}


# -- operations: one row per route and method ------------------------------------------------------
class Route(NamedTuple):
    method: str
    path: str
    auth: str | None  # USER (any account), ADMIN, or None (public); 401 and 403 follow from it
    summary: str
    answer: str  # the schema of the success body
    status: int = 200
    body: str | None = None  # the schema of the JSON request body
    errors: tuple[int, ...] = ()  # error statuses besides 401 and 403
    query: tuple[Schema, ...] = ()


USER, ADMIN = "user", "admin"
AUTHENTICATED = [{"bearerAuth": []}, {"cookieAuth": []}]


def query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def path(name: str, schema: Schema, description: str = "") -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


PATH_PARAMS = {
    "user_id": path("user_id", ID),
    "key_id": path("key_id", ID),
    "channel_id": path("channel_id", ID),
    # Flask's <path:...> matches no line break and no leading `/`
    "model": path(
        "model",
        MODEL | {"pattern": "^[^/\\u0000-\\u001f][^\\u0000-\\u001f]*$"},
        "The model name; it may contain `/`.",
    ),
    "name": path(
        "name", text(pricing.GROUP_MAX, min_length=1) | {"pattern": "^[^/\\u0000]+$"}, "The group name."
    ),
}
PAGE = (
    query("page", typed("integer", minimum=1, maximum=MAX_PAGE, default=1), "Page number, from 1."),
    query("per_page", typed("integer", minimum=1, maximum=MAX_PER_PAGE, default=50), "Rows per page."),
)
QUERY_INT = typed("integer", **INT32)
LOG_FILTERS = (
    query("user_id", QUERY_INT, "Rows of this user (admins; other callers only ever see their own rows)."),
    query("key_id", QUERY_INT, "Rows of this API key."),
    query("model", MODEL, "Rows of this public model name."),
    query("channel_id", QUERY_INT, "Rows served by this channel."),
    query("status", QUERY_INT, "Rows with this HTTP status, such as 200 or 429."),
    query("since", typed("string", format="date-time"), "Rows created at or after this ISO 8601 time."),
    query("until", typed("string", format="date-time"), "Rows created before this ISO 8601 time."),
    *PAGE,
)
KIND = (query("kind", typed("string", enum=["topup", "adjustment", "refund"]), "Overrides the body's kind."),)
OF_USER = (query("user_id", QUERY_INT, "Admins: only this user's keys."),)
WRITE, CHANGE = (400, 415), (400, 404, 415)  # a body; a body and an object

# fmt: off
ROUTES = [  # paths below /api
    Route("get", "/status", None, "Liveness, version and channel counts", "Status"),
    Route("get", "/openapi.json", None, "This OpenAPI 3.1 document", "Document"),
    Route("post", "/auth/login", None, "Log in (sets the session cookie)", "User", body="Login",
          errors=(400, 401, 415, 429)),
    Route("post", "/auth/logout", None, "Log out: ends the user's console sessions and access token",
          "LoggedOut", body="Logout", errors=(400, 415)),
    Route("get", "/auth/me", USER, "The caller's account", "User"),
    Route("post", "/auth/token", USER, "A new access token for the caller", "AccessToken", errors=(415,)),
    Route("get", "/users", ADMIN, "List accounts", "UserList"),
    Route("post", "/users", ADMIN, "Create an account", "User", 201, "UserCreate", (400, 409, 415)),
    Route("get", "/users/{user_id}", USER, "One account (users: their own)", "User", errors=(404,)),
    Route("patch", "/users/{user_id}", ADMIN, "Change an account", "User", body="UserUpdate", errors=CHANGE),
    Route("get", "/users/{user_id}/wallet", ADMIN, "A user's balance and ledger", "Wallet", errors=(400, 404),
          query=PAGE),
    Route("post", "/users/{user_id}/wallet", ADMIN, "Credit or debit a wallet", "WalletAdjusted", 201,
          "WalletAdjust", CHANGE, KIND),
    Route("get", "/keys", USER, "List API keys (the caller's; admins: all)", "KeyList", query=OF_USER),
    Route("post", "/keys", USER, "Create an API key (shown in full this once)", "ApiKeyCreated", 201,
          "ApiKeyCreate", CHANGE),
    Route("get", "/keys/{key_id}", USER, "One API key", "ApiKey", errors=(404,)),
    Route("patch", "/keys/{key_id}", USER, "Change an API key", "ApiKey", body="ApiKeyUpdate", errors=CHANGE),
    Route("delete", "/keys/{key_id}", USER, "Delete an API key", "Deleted", errors=(404,)),
    Route("get", "/channels", ADMIN, "List channels", "ChannelList"),
    Route("post", "/channels", ADMIN, "Create a channel", "Channel", 201, "ChannelCreate", WRITE),
    Route("get", "/channels/{channel_id}", ADMIN, "One channel", "Channel", errors=(404,)),
    Route("patch", "/channels/{channel_id}", ADMIN, "Change a channel", "Channel", body="ChannelUpdate",
          errors=CHANGE),
    Route("delete", "/channels/{channel_id}", ADMIN, "Delete a channel", "Deleted", errors=(404,)),
    Route("post", "/channels/{channel_id}/test", ADMIN, "Test a channel with one tiny request",
          "ChannelTestResult", body="ChannelTest", errors=CHANGE),
    Route("get", "/prices", USER, "List model prices", "PriceList"),
    Route("put", "/prices/{model}", ADMIN, "Set a model's price", "Price", body="PriceWrite", errors=WRITE),
    Route("delete", "/prices/{model}", ADMIN, "Delete a model's price", "PriceDeleted", errors=(404,)),
    Route("get", "/groups", ADMIN, "List group multipliers", "GroupList"),
    Route("put", "/groups/{name}", ADMIN, "Set a group multiplier", "Group", body="GroupWrite", errors=WRITE),
    Route("get", "/settings", ADMIN, "Runtime settings", "Settings"),
    Route("patch", "/settings", ADMIN, "Change settings", "Settings", body="SettingsUpdate", errors=WRITE),
    Route("post", "/redemptions", ADMIN, "Create redemption codes", "RedemptionCodes", 201,
          "RedemptionCreate", WRITE),
    Route("get", "/wallet", USER, "The caller's balance and ledger", "Wallet", errors=(400,), query=PAGE),
    Route("post", "/wallet/redeem", USER, "Redeem a code into the caller's wallet", "Redeemed", body="Redeem",
          errors=WRITE),
    Route("get", "/logs", USER, "Usage logs (the caller's rows; admins: all)", "LogPage", errors=(400,),
          query=LOG_FILTERS),
    Route("get", "/dead-letters", ADMIN, "Usage records set aside because the database refused them",
          "DeadLetterPage", errors=(400,), query=PAGE),
]
# fmt: on
SESSION_COOKIE = {
    "Set-Cookie": {
        "description": "The console session: `session=...; Expires=...; HttpOnly; Path=/; SameSite=Lax`, and "
        "`Secure` when the request came over HTTPS (or a trusted proxy says so).",
        "schema": STR,
    }
}


def operation_id(method: str, route_path: str) -> str:
    """A stable, unique name for code generators: the method and the path's words in camelCase, such as
    `getUsersUserIdWallet` for GET /users/{user_id}/wallet (below /api) or `postV1ChatCompletions`."""
    words = [word for word in re.split(r"[^A-Za-z0-9]+", route_path) if word]
    return method.lower() + "".join(word[0].upper() + word[1:] for word in words)


def operation(route: Route) -> Schema:
    codes = set(route.errors) | ({401} if route.auth else set()) | ({403} if route.auth == ADMIN else set())
    if "{" in route.path or route.query:
        codes.add(400)  # a parameter out of its range
    answer: Schema = {
        "description": route.summary,
        "content": {"application/json": {"schema": ref(route.answer)}},
    }
    if route.path == "/auth/login":
        answer["headers"] = SESSION_COOKIE
    op: Schema = {
        "operationId": operation_id(route.method, route.path),
        "tags": [route.path.split("/")[1]],
        "summary": route.summary,
        "security": AUTHENTICATED if route.auth else [],
        "responses": {
            str(route.status): answer,
            **{str(c): {"$ref": f"#/components/responses/{c}"} for c in sorted(codes)},
        },
    }
    if route.auth == ADMIN:
        op["description"] = "Admins only."
    names = [part[1:-1] for part in route.path.split("/") if part.startswith("{")]
    if names or route.query:
        op["parameters"] = [PATH_PARAMS[n] for n in names] + list(route.query)
    if route.body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(route.body)}}}
    return op


def paths(routes: list[Route]) -> dict[str, dict[str, Schema]]:
    result: dict[str, dict[str, Schema]] = {}
    for route in routes:
        result.setdefault("/api" + route.path, {})[route.method] = operation(route)
    return result


RELAY_SECURITY = [{"bearerKey": []}, {"anthropicKey": []}, {"googleKey": []}, {"googleKeyQuery": []}]
RELAY_REFERENCES = {
    "openai": "https://platform.openai.com/docs/api-reference",
    "responses": "https://platform.openai.com/docs/api-reference/responses",
    "anthropic": "https://docs.anthropic.com/en/api/messages",
    "gemini": "https://ai.google.dev/api",
}


def relay_paths() -> dict[str, dict[str, Schema]]:
    """The routes API keys reach (tag `relay-<protocol>`). Their bodies are the providers' own: the
    operation points at the provider's reference instead of restating it."""
    result: dict[str, dict[str, Schema]] = {}
    for route in v1.ROUTES:
        names = re.findall(r"\{(\w+)\}", route.path)
        op: Schema = {
            "operationId": operation_id(route.method, route.path),
            "tags": [f"relay-{route.protocol}"],
            "summary": route.summary,
            "description": f"Bodies and errors as in {RELAY_REFERENCES[route.protocol]}; errors in that "
            "protocol's shape.",
            "security": RELAY_SECURITY,
            "responses": {
                "200": {"description": "The answer, in the client's protocol."},
                "default": {"description": "An error, in the client's protocol."},
            },
        }
        if names:
            op["parameters"] = [path(n, STR) for n in names]
        if route.method == "POST":
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        result.setdefault(route.path, {})[route.method.lower()] = op
    return result


SPEC: Schema = {
    "openapi": "3.1.0",
    "info": {
        "title": "Relayhouse management API",
        "version": __version__,
        "description": "JSON under /api/ for the console and for automation. Money is integer micro-USD "
        '(`*_micro_usd`) or USD (`*_usd`). Errors are `{"error": {message, type, param, code}}`. The '
        "relay's own routes, which API keys reach, are listed under the `relay-*` tags.",
    },
    # relative to the document's own address: the gateway that serves it, whatever its public URL
    "servers": [{"url": "/", "description": "This gateway"}],
    "paths": {**paths(ROUTES), **relay_paths()},
    "components": {
        "securitySchemes": {
            "bearerKey": {"type": "http", "scheme": "bearer", "description": "A relay key, `sk-...`."},
            "anthropicKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            "googleKey": {"type": "apiKey", "in": "header", "name": "x-goog-api-key"},
            "googleKeyQuery": {"type": "apiKey", "in": "query", "name": "key"},
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "`Authorization: Bearer <token>`: an access token from POST /api/auth/token, "
                "or RELAYHOUSE_ADMIN_TOKEN (acting as the root admin).",
            },
            "cookieAuth": {
                "type": "apiKey",
                "in": "cookie",
                "name": "session",
                "description": "The console session from POST /api/auth/login. Requests that change state "
                "(POST, PUT, PATCH) must send a JSON body, which a cross-site form cannot.",
            },
        },
        "schemas": SCHEMAS,
        "responses": RESPONSES,
    },
}
DOCUMENT = json.dumps(SPEC)  # serialized once, in declaration order (jsonify would sort the keys)


@bp.get("/openapi.json")
def openapi():  # noqa: ANN201
    return Response(DOCUMENT, mimetype="application/json")
