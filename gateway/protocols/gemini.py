"""Google's Gemini API (`generativelanguage.googleapis.com`, `/v1beta` and `/v1`) in both directions:
`generateContent`, `streamGenerateContent`, `countTokens`, `embedContent` and `batchEmbedContents`.

Spec: https://ai.google.dev/api (GenerateContentRequest and Response, Content, Part, Tool, ToolConfig,
GenerationConfig, UsageMetadata, EmbedContentRequest), errors per
https://ai.google.dev/gemini-api/docs/troubleshooting, thought signatures per
https://ai.google.dev/gemini-api/docs/thought-signatures; checked against googleapis/python-genai and the
requests Gemini CLI 0.61.0 sends.

* The model is in the URL (`/v1beta/models/<model>:<action>`), never in the body: inbound it comes from the
  route, outbound it goes into the URL, so a native pass-through sends the client's body untouched.
* Streams: with `?alt=sse` they are `data:` events with no end marker; without it, one JSON array sent
  element by element (`[`, then `,\\r\\n` between elements, then `]`). The gateway always asks its upstream
  for SSE, and re-frames for a client that asked for the array.
* Usage: `promptTokenCount` includes `cachedContentTokenCount`; `candidatesTokenCount` excludes
  `thoughtsTokenCount` (the hub's completion counts both). In a stream every chunk repeats the usage so far:
  the last one wins.
* Function calls come without ids from Google's API: one is made up, and results are matched to calls by
  name and order.
* Thought signatures ride on parts (`thoughtSignature`), on a `functionCall` part for the reasoning behind
  that call, else on a text part. Gemini 3 models refuse a current turn's function call without one: for a
  call made elsewhere the documented escape value `skip_thought_signature_validator` stands in. Another
  protocol's signed thinking reaches a Gemini client as one base64 `thoughtSignature` holding the blocks
  whole (`pack_thinking`), on the first part that is not a thought: google-genai takes signatures as base64
  bytes only, and a client may drop thought parts, while Anthropic wants its thinking text back.
* Requests are read by JSON name or proto name (`thinkingConfig` or `thinking_config`), as Google's parser
  does: google-genai sends some nested fields in snake case.
"""

from __future__ import annotations

import base64
import functools
import itertools
import math
import mimetypes
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

import orjson

from gateway import sse, tokens
from gateway.neutral import Call, GatewayError, Reply, Usage, bad_request
from gateway.protocols.base import Signature, Tally, unwrap_signature, wrap_signature
from gateway.protocols.openai import check_model, json_object, new_id, retry_after_s
from gateway.upstream import UpstreamRequest

if TYPE_CHECKING:
    from gateway.catalog import ChannelInfo, UpstreamKey
    from gateway.relay import Inbound

name = "gemini"
KINDS = {
    "generateContent": "chat",
    "streamGenerateContent": "chat",
    "countTokens": "count",
    "embedContent": "embeddings",
    "batchEmbedContents": "embeddings",
}
# google.rpc.Code names by the HTTP status the gateway chose (https://cloud.google.com/apis/design/errors)
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "FAILED_PRECONDITION",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
GOOGLE_STATUSES = frozenset(STATUS_NAMES.values()) | {
    "OUT_OF_RANGE",
    "ALREADY_EXISTS",
    "DATA_LOSS",
    "UNKNOWN",
}
# OpenAI-flavoured error types for upstream errors, by status
ERROR_TYPES = {401: "authentication_error", 403: "permission_denied", 404: "invalid_request_error"}
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
# ErrorInfo reasons that say the key itself is no good: it is set aside
KEY_REASONS = frozenset(
    ("API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "CONSUMER_SUSPENDED", "SERVICE_DISABLED")
)

# generationConfig fields that map one to one onto hub fields
GENERATION_FIELDS = {
    "maxOutputTokens": "max_tokens",
    "temperature": "temperature",
    "topP": "top_p",
    "topK": "top_k",
    "stopSequences": "stop",
    "seed": "seed",
    "presencePenalty": "presence_penalty",
    "frequencyPenalty": "frequency_penalty",
}
THINKING_LEVELS = {"MINIMAL": "minimal", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}
# reasoning effort for a Gemini 3 model (thinkingLevel), else as a budget that every 2.5 model takes
EFFORT_LEVELS = {"none": "MINIMAL", "minimal": "MINIMAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH",
                 "xhigh": "HIGH", "max": "HIGH"}  # fmt: skip
EFFORT_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 24576,
                  "max": 24576}  # fmt: skip
MAX_THINKING_BUDGET = 24576  # the largest budget Gemini 2.5 Flash takes (Pro takes 32768)
MAX_THINKING_BUDGET_PRO = 32768
TOOL_MODES = {"AUTO": "auto", "ANY": "required", "NONE": "none", "VALIDATED": "auto"}
TOOL_CHOICES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
FINISH_TO_HUB = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
}
FINISH_FROM_HUB = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}
# Google's documented value for a function call whose signature is unknown (a call made by another model)
SKIP_SIGNATURE = "skip_thought_signature_validator"
# JSON Schema keywords whose value is a schema, a list of schemas, or a map of them (for `json_schema`)
SCHEMA_ONE = ("items", "additionalProperties", "not", "contains", "propertyNames")
SCHEMA_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")
SCHEMA_MAP = ("properties", "$defs", "definitions", "patternProperties")
OPENAPI_ONLY = ("nullable", "propertyOrdering", "example")
# Gemini's Schema fields by their proto names, which its proto-JSON parser takes too
SCHEMA_PROTO_NAMES = {
    "any_of": "anyOf",
    "max_items": "maxItems",
    "min_items": "minItems",
    "max_length": "maxLength",
    "min_length": "minLength",
    "max_properties": "maxProperties",
    "min_properties": "minProperties",
    "property_ordering": "propertyOrdering",
    "additional_properties": "additionalProperties",
}
JSON_HEADERS = [("Content-Type", "application/json")]
SSE_HEADERS = [
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
]
ARRAY_HEADERS = [
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
]
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")
_GEMINI_MAJOR = re.compile(r"(?:models/)?gemini-(\d+)")
_WRAPPED_B64 = base64.b64encode(b"rh1.").decode()[:5]  # how every base64-encoded wrapped signature begins
_URLSAFE = str.maketrans("-_", "+/")
_ENVELOPE_B64 = base64.b64encode(b'{"rh":1,"').decode()  # how every `pack_thinking` envelope begins
_VERSIONED = re.compile(r"/v1(?:alpha|beta\d*)?$")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


@functools.cache
def _snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), name)


def _f(obj: Any, name: str) -> Any:
    """A request field by its JSON name or its proto name (`thinkingConfig` or `thinking_config`): Google's
    proto-JSON parser takes both, and google-genai sends some nested fields in snake case."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(name)
    return obj.get(_snake(name)) if value is None else value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def model_id(value: Any) -> Any:
    """The model of a Gemini path segment or field: `models/gemini-2.5-flash` and `gemini-2.5-flash` alike."""
    return value.removeprefix("models/") if isinstance(value, str) else value


def model_object(model: str, display_name: str | None = None) -> dict[str, Any]:
    """A model as `GET /v1beta/models` lists it."""
    embeds = "embed" in model
    methods = (
        ["embedContent", "batchEmbedContents"] if embeds else ["generateContent", "streamGenerateContent"]
    )
    return {
        "name": f"models/{model}",
        "baseModelId": model,
        "version": "001",
        "displayName": display_name or model,
        "description": "",
        "supportedGenerationMethods": [*methods, "countTokens"],
    }


# -- inbound: parsing and errors ------------------------------------------------------------------------
def parse_request(endpoint: str, raw: bytes, inbound: Inbound) -> Call:
    kind = KINDS.get(endpoint)
    if kind is None:
        raise GatewayError(404, f"The method `{endpoint}` is not served here.", code="unknown_method")
    body = json_object(raw)
    model = check_model(model_id(inbound.params.get("model")))
    CHECKS[kind](body)
    config = _dict(_f(body, "generationConfig"))
    max_output = _f(config, "maxOutputTokens")
    if max_output is not None and not (_is_int(max_output) and max_output >= 0):
        raise bad_request(
            "`generationConfig.maxOutputTokens` must be a non-negative integer.", "maxOutputTokens"
        )
    thoughts = _f(_f(config, "thinkingConfig"), "includeThoughts") is True
    alt = parse_qs(inbound.query or "").get("alt", [""])[-1]
    return Call(
        endpoint,
        model,
        body,
        raw,
        endpoint == "streamGenerateContent",
        True,  # every Gemini answer carries its usage
        max_output,
        {"sse": alt == "sse", "thoughts": thoughts},
        protocol=name,
        kind=kind,
    )


def _check_generate(body: dict[str, Any]) -> None:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise bad_request("* GenerateContentRequest.contents: contents is not specified", "contents")
    if not all(isinstance(c, dict) and isinstance(c.get("parts", []), list) for c in contents):
        raise bad_request(
            "* GenerateContentRequest.contents: each content must be an object with parts", "contents"
        )
    count = _f(_f(body, "generationConfig"), "candidateCount")
    if count is not None and count != 1:
        raise bad_request(
            "Only one candidate can be generated (`candidateCount` must be 1).", "candidateCount"
        )


def _check_count(body: dict[str, Any]) -> None:
    if not isinstance(body.get("contents", []), list) or not isinstance(
        _f(body, "generateContentRequest") or {}, dict
    ):
        raise bad_request("* CountTokensRequest: `contents` must be a list.", "contents")


def _check_embed(body: dict[str, Any]) -> None:
    requests = body.get("requests") if "requests" in body else [body]
    if not isinstance(requests, list) or not requests:
        raise bad_request("* BatchEmbedContentsRequest.requests: requests is not specified", "requests")
    for request in requests:
        if not isinstance(request, dict) or not isinstance(request.get("content"), dict):
            raise bad_request("* EmbedContentRequest.content: content is not specified", "content")


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "chat": _check_generate,
    "count": _check_count,
    "embeddings": _check_embed,
}


def error_body(err: GatewayError) -> dict[str, Any]:
    """Google's error object. The status name is the upstream's own when it gave one (kept as `code` by
    `map_error`), else the one that fits the HTTP status."""
    status = err.code if err.code in GOOGLE_STATUSES else None
    status = (
        status or STATUS_NAMES.get(err.status) or ("INTERNAL" if err.status >= 500 else "FAILED_PRECONDITION")
    )
    error: dict[str, Any] = {"code": err.status, "message": err.message, "status": status}
    details = []
    if err.code and err.code not in GOOGLE_STATUSES:
        details.append({"@type": ERROR_INFO, "reason": err.code, "domain": "relayhouse"})
    if err.retry_after is not None:
        details.append({"@type": RETRY_INFO, "retryDelay": f"{err.retry_after}s"})
    if details:
        error["details"] = details
    return {"error": error}


def render_error(err: GatewayError) -> Reply:
    headers = list(JSON_HEADERS)
    if err.retry_after is not None:
        headers.append(("Retry-After", str(err.retry_after)))
    return Reply(err.status, headers, orjson.dumps(error_body(err)))


class Framer:
    """One streamed answer's framing: SSE events (`?alt=sse`), or the elements of one JSON array."""

    __slots__ = ("array", "opened")

    def __init__(self, array: bool) -> None:
        self.array = array
        self.opened = False

    def frame(self, payload: bytes) -> bytes:
        if not self.array:
            return sse.frame(payload)
        head = b",\r\n" if self.opened else b"["
        self.opened = True
        return head + payload

    def close(self) -> bytes:
        return (b"]" if self.opened else b"[]") if self.array else b""

    def error(self, payload: bytes) -> bytes:
        return self.frame(payload) + b"]" if self.array else sse.frame(payload)


def _framer(call: Call) -> Framer:
    framer = Framer(array=not call.extra.get("sse", True))
    call.extra["framer"] = framer
    return framer


def stream_error(err: GatewayError, call: Call) -> bytes:
    """An `{"error": ...}` element: an SSE event, or the array's last element (Google's own way; google-genai
    raises on a chunk that starts with `{"error":`)."""
    framer = call.extra.get("framer")
    return (framer or Framer(array=False)).error(orjson.dumps(error_body(err)))


def stream_headers(call: Call) -> list[tuple[str, str]]:
    return list(SSE_HEADERS if call.extra.get("sse", True) else ARRAY_HEADERS)


# -- inbound: the request as a hub request ----------------------------------------------------------------
def request_to_hub(call: Call) -> dict[str, Any]:
    if call.kind == "embeddings":
        return _embeddings_to_hub(call)
    body = call.body
    hub: dict[str, Any] = {"model": call.model, "messages": _messages_to_hub(body), "stream": call.stream}
    hub.update(_tools_to_hub(body))
    hub.update(_config_to_hub(_dict(_f(body, "generationConfig"))))
    return hub


def _texts(parts: Any) -> list[str]:
    return [p["text"] for p in _list(parts) if isinstance(p, dict) and isinstance(p.get("text"), str)]


def _text_content(texts: list[str]) -> str | list[dict[str, Any]]:
    return texts[0] if len(texts) == 1 else [{"type": "text", "text": t} for t in texts]


class CallIds:
    """Ids for function calls that came without one, and results matched to their calls: by id when the
    result has one, else by name and order. Made-up ids are deterministic within one request, so a history
    sent again gets the same ones."""

    def __init__(self, make: Callable[[str], str] | None = None) -> None:
        self._count = itertools.count()
        self._make = make or (lambda fn: f"call_{_UNSAFE_ID.sub('_', fn)}_{next(self._count)}")
        self._open: dict[str, list[str]] = {}

    def call(self, fn: str, given: Any) -> str:
        ident = given if isinstance(given, str) and given else self._make(fn)
        self._open.setdefault(fn, []).append(ident)
        return ident

    def result(self, fn: str, given: Any) -> str:
        waiting = self._open.get(fn) or []
        if isinstance(given, str) and given:
            if given in waiting:
                waiting.remove(given)
            return given
        return waiting.pop(0) if waiting else self._make(fn)


def _messages_to_hub(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = _texts(_f(_f(body, "systemInstruction"), "parts"))
    if system:
        messages.append({"role": "system", "content": _text_content(system)})
    ids = CallIds()
    for content in _list(body.get("contents")):
        parts = [p for p in _list(_dict(content).get("parts")) if isinstance(p, dict)]
        if content.get("role") == "model":
            messages.append(assistant_message(parts, ids.call, client=True))
        else:
            messages.extend(_user_to_hub(parts, ids))
    return messages


def client_signature(text: str) -> Signature:
    """A signature a Gemini client sent back: Gemini's own as it is, another protocol's as `wrap_for_client`
    made it (in either base64 alphabet: google-genai re-encodes bytes URL-safe)."""
    decoded = _b64decode(text) if text.startswith(_WRAPPED_B64) else None
    try:
        return unwrap_signature(decoded.decode() if decoded else text, name)
    except UnicodeDecodeError:
        return unwrap_signature(text, name)


def wrap_for_client(signature: Signature) -> str:
    """A signature as a Gemini client carries it. `thoughtSignature` is bytes on Gemini's wire (base64 in
    JSON), and google-genai refuses a response whose signature is not base64: so another protocol's
    signature, wrapped with its origin, goes out base64-encoded."""
    if signature[0] == name:
        return signature[1]
    return base64.b64encode(wrap_signature(signature, name).encode()).decode()


def _b64decode(text: str) -> bytes | None:
    """Base64 in either alphabet, padded or not (google-genai sends bytes back URL-safe)."""
    try:
        return base64.b64decode(text.translate(_URLSAFE) + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        return None


def pack_thinking(blocks: list[Any]) -> str | None:
    """Another protocol's thinking blocks as one `thoughtSignature`, for a Gemini client to carry back: the
    signed ones with their text (an Anthropic signature is worth nothing without the thinking it signs, and
    a client may drop or never see thought parts) and the redacted ones. Base64 of a JSON envelope."""
    items: list[dict[str, Any]] = []
    for block in blocks:
        block = _dict(block)
        signature = _signature(block.get("signature"))
        if block.get("type") == "thinking" and signature:
            items.append(
                {"type": "thinking", "thinking": block.get("thinking") or "", "signature": list(signature)}
            )
        elif block.get("type") == "redacted_thinking" and isinstance(block.get("data"), str):
            items.append({"type": "redacted_thinking", "data": block["data"]})
    if not items:
        return None
    return base64.b64encode(orjson.dumps({"rh": 1, "blocks": items})).decode()


def unpack_thinking(text: str) -> list[dict[str, Any]] | None:
    """The thinking blocks `pack_thinking` put in a signature; None for any other signature."""
    if not text.startswith(_ENVELOPE_B64):
        return None
    try:
        envelope = orjson.loads(_b64decode(text) or b"")
    except orjson.JSONDecodeError:
        return None
    blocks = []
    for item in _list(_dict(envelope).get("blocks")):
        item = _dict(item)
        signature = _signature(item.get("signature"))
        if item.get("type") == "thinking" and signature and isinstance(item.get("thinking"), str):
            blocks.append({"type": "thinking", "thinking": item["thinking"], "signature": signature})
        elif item.get("type") == "redacted_thinking" and isinstance(item.get("data"), str):
            blocks.append({"type": "redacted_thinking", "data": item["data"]})
    return blocks


def assistant_message(
    parts: list[dict[str, Any]], call_id: Callable[[str, Any], str], client: bool = False
) -> dict[str, Any]:
    """A model turn's parts as a hub assistant message. Thought parts become reasoning; a signature closes
    the thinking before it (on a thought part, or on the text part after the thoughts), and a signature on
    a `functionCall` part belongs to that call. From a client (`client`), a signature may also be one this
    gateway handed out: another protocol's thinking blocks, whole (`pack_thinking`)."""
    texts: list[str] = []
    reasoning: list[str] = []
    blocks: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    thinking: list[str] = []  # thought text no signature has closed yet

    def close(signature: Signature | None) -> None:
        blocks.append({"type": "thinking", "thinking": "".join(thinking), "signature": signature})
        thinking.clear()

    for part in parts:
        text = part.get("text")
        value = _f(part, "thoughtSignature")
        packed = unpack_thinking(value) if client and isinstance(value, str) else None
        if packed is not None:  # the thought parts before it (if any) showed the same reasoning
            blocks.extend(packed)
            thinking.clear()
            value = None
        signature = None
        if isinstance(value, str) and value:
            signature = client_signature(value) if client else (name, value)
        function_call = _f(part, "functionCall")
        if part.get("thought") is True and isinstance(text, str):
            reasoning.append(text)
            thinking.append(text)
            if signature:
                close(signature)
            continue
        if isinstance(function_call, dict):
            fn = str(function_call.get("name") or "")
            args = function_call.get("args")
            tool_call: dict[str, Any] = {
                "id": call_id(fn, function_call.get("id")),
                "type": "function",
                "function": {
                    "name": fn,
                    "arguments": orjson.dumps(args if args is not None else {}).decode(),
                },
            }
            if signature:
                tool_call["signature"] = signature
            calls.append(tool_call)
            continue
        if signature:
            close(signature)
        if isinstance(text, str):
            texts.append(text)
    if thinking:
        close(None)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if blocks:
        message["thinking_blocks"] = blocks
    if calls:
        message["tool_calls"] = calls
    return message


def _user_to_hub(parts: list[dict[str, Any]], ids: CallIds) -> list[dict[str, Any]]:
    """A user turn: its function results as tool messages (which must follow the assistant's calls
    directly), then the rest as one user message."""
    results: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    for part in parts:
        result, inline, uri = (
            _f(part, "functionResponse"),
            _f(part, "inlineData"),
            _f(_f(part, "fileData"), "fileUri"),
        )
        if isinstance(result, dict):
            results.append(_tool_message(result, ids))
        elif isinstance(part.get("text"), str) and part.get("thought") is not True:
            content.append({"type": "text", "text": part["text"]})
        elif isinstance(inline, dict):
            content.append(_inline_to_hub(inline))
        elif isinstance(uri, str) and uri:
            mime = str(_f(_f(part, "fileData"), "mimeType") or "")
            if not mime or mime.startswith("image/"):
                content.append({"type": "image_url", "image_url": {"url": uri}})
            else:  # a hub file part holds data only: another upstream cannot fetch Google's file URIs
                content.append({"type": "text", "text": f"[file: {uri}]"})
    if content:
        only_text = all(p["type"] == "text" for p in content)
        results.append(
            {"role": "user", "content": _text_content([p["text"] for p in content]) if only_text else content}
        )
    return results


def _tool_message(result: dict[str, Any], ids: CallIds) -> dict[str, Any]:
    fn = str(result.get("name") or "")
    response = result.get("response")
    message = {
        "role": "tool",
        "tool_call_id": ids.result(fn, result.get("id")),
        "name": fn,
        "content": orjson.dumps(response if response is not None else {}).decode(),
    }
    if isinstance(response, dict) and "error" in response and "output" not in response:
        message["is_error"] = True  # Google's convention: `output` for a result, `error` for a failure
    return message


def _inline_to_hub(data: dict[str, Any]) -> dict[str, Any]:
    mime = str(_f(data, "mimeType") or "application/octet-stream")
    url = f"data:{mime};base64,{data.get('data') or ''}"
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": url}}
    extension = mimetypes.guess_extension(mime) or ""
    return {"type": "file", "file": {"file_data": url, "filename": f"file{extension}"}}


def json_schema(schema: Any) -> Any:
    """A Gemini schema as JSON Schema: the OpenAPI subset's upper-case types (`OBJECT`, `STRING`) in lower
    case, `nullable` as a `null` type, OpenAPI-only keywords left out. Plain JSON Schema passes unchanged."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        key = SCHEMA_PROTO_NAMES.get(key, key)
        if key == "type":
            if isinstance(value, str) and value.upper() != "TYPE_UNSPECIFIED":
                out[key] = value.lower()
            elif isinstance(value, list):
                out[key] = [v.lower() if isinstance(v, str) else v for v in value]
        elif key in SCHEMA_MAP and isinstance(value, dict):
            out[key] = {k: json_schema(v) for k, v in value.items()}
        elif key in SCHEMA_LIST and isinstance(value, list) or key == "items" and isinstance(value, list):
            out[key] = [json_schema(v) for v in value]
        elif key in SCHEMA_ONE:
            out[key] = json_schema(value)
        elif key in OPENAPI_ONLY or key == "format" and value == "enum":
            continue
        else:
            out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _tools_to_hub(body: dict[str, Any]) -> dict[str, Any]:
    """Function declarations as hub tools; Google's built-in tools (googleSearch, codeExecution, urlContext
    and the like) have no counterpart elsewhere and are left out."""
    tools = []
    for tool in _list(body.get("tools")):
        for decl in _list(_f(tool, "functionDeclarations")):
            if not isinstance(decl, dict) or not decl.get("name"):
                continue
            schema = _f(decl, "parametersJsonSchema") or decl.get("parameters")
            function: dict[str, Any] = {"name": decl["name"]}
            if decl.get("description"):
                function["description"] = decl["description"]
            function["parameters"] = json_schema(schema) if schema else {"type": "object", "properties": {}}
            tools.append({"type": "function", "function": function})
    config = _dict(_f(_f(body, "toolConfig"), "functionCallingConfig"))
    allowed = [n for n in _list(_f(config, "allowedFunctionNames")) if isinstance(n, str)]
    if allowed:
        tools = [t for t in tools if t["function"]["name"] in allowed]
    if not tools:
        return {}
    out: dict[str, Any] = {"tools": tools}
    choice = TOOL_MODES.get(str(config.get("mode") or "").upper())
    if choice == "required" and len(allowed) == 1:
        out["tool_choice"] = {"type": "function", "function": {"name": allowed[0]}}
    elif choice:
        out["tool_choice"] = choice
    return out


def _config_to_hub(config: dict[str, Any]) -> dict[str, Any]:
    hub = {
        target: _f(config, field)
        for field, target in GENERATION_FIELDS.items()
        if _f(config, field) is not None
    }
    if isinstance(hub.get("stop"), str):
        hub["stop"] = [hub["stop"]]
    response_format = _response_format_to_hub(config)
    if response_format:
        hub["response_format"] = response_format
    thinking = _dict(_f(config, "thinkingConfig"))
    budget = _f(thinking, "thinkingBudget")
    if _is_int(budget) and budget >= 0:  # -1 is "dynamic", the upstream's own default
        hub["thinking_budget"] = budget
    level = _f(thinking, "thinkingLevel")
    if isinstance(level, str) and level.upper() in THINKING_LEVELS:
        hub["reasoning_effort"] = THINKING_LEVELS[level.upper()]
    if _f(thinking, "includeThoughts") is True:
        hub["include_reasoning"] = True
    return hub


def _response_format_to_hub(config: dict[str, Any]) -> dict[str, Any] | None:
    if _f(config, "responseMimeType") != "application/json":
        return None  # text/plain; text/x.enum has no counterpart
    schema = _f(config, "responseJsonSchema") or _f(config, "responseSchema")
    if isinstance(schema, dict):
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": json_schema(schema)}}
    return {"type": "json_object"}


def _embed_requests(call: Call) -> list[dict[str, Any]]:
    return _list(call.body.get("requests")) if call.endpoint == "batchEmbedContents" else [call.body]


def _embeddings_to_hub(call: Call) -> dict[str, Any]:
    requests = _embed_requests(call)
    inputs = ["\n".join(_texts(_dict(r.get("content")).get("parts"))) for r in requests]
    if not all(inputs):
        raise bad_request("Only text can be embedded by this model's channel.", "content")
    hub: dict[str, Any] = {"model": call.model, "input": inputs}
    dimensions = _f(requests[0], "outputDimensionality")
    if _is_int(dimensions):
        hub["dimensions"] = dimensions
    return hub


def estimate_count(call: Call) -> bytes:
    """`countTokens` answered here, with the tokenizer, for a model no Gemini channel serves."""
    request = _dict(_f(call.body, "generateContentRequest")) or call.body
    texts = _texts(_f(_f(request, "systemInstruction"), "parts"))
    for content in _list(request.get("contents")):
        for part in _list(_dict(content).get("parts")):
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            for key in ("functionCall", "functionResponse"):
                if isinstance(_f(part, key), dict):
                    texts.append(orjson.dumps(_f(part, key)).decode())
    if request.get("tools"):
        texts.append(orjson.dumps(request["tools"]).decode())
    return orjson.dumps({"totalTokens": tokens.count(call.model, "\n".join(texts))})


# -- inbound: hub answers rendered ------------------------------------------------------------------------
def usage_metadata(usage: Usage) -> dict[str, Any]:
    meta = {
        "promptTokenCount": usage.prompt_tokens,
        "candidatesTokenCount": max(0, usage.completion_tokens - usage.reasoning_tokens),
        "totalTokenCount": usage.total_tokens,
    }
    if usage.cached_tokens:
        meta["cachedContentTokenCount"] = usage.cached_tokens
    if usage.reasoning_tokens:
        meta["thoughtsTokenCount"] = usage.reasoning_tokens
    return meta


def _signature(value: Any) -> Signature | None:
    if isinstance(value, tuple | list) and len(value) == 2 and all(isinstance(v, str) and v for v in value):
        return value[0], value[1]
    return None


def _args(arguments: Any) -> dict[str, Any]:
    """Tool-call arguments (a JSON string in the hub) as Gemini's `args` object; what is not a JSON object
    (a model's broken JSON) becomes an empty one."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _function_call_part(tool_call: dict[str, Any]) -> dict[str, Any]:
    function = _dict(tool_call.get("function"))
    call: dict[str, Any] = {"name": function.get("name") or "", "args": _args(function.get("arguments"))}
    if tool_call.get("id"):
        call = {"id": tool_call["id"], **call}
    part: dict[str, Any] = {"functionCall": call}
    signature = _signature(tool_call.get("signature"))
    if signature:
        part["thoughtSignature"] = wrap_for_client(signature)
    return part


def _attach(parts: list[dict[str, Any]], signature: str) -> None:
    """Put a signature of reasoning on the first part that is not a thought (a client may drop thoughts)."""
    for index, part in enumerate(parts):
        if part.get("thought") is True:
            continue
        if "thoughtSignature" in part:
            parts.insert(index, {"text": "", "thoughtSignature": signature})
        else:
            part["thoughtSignature"] = signature
        return
    parts.append({"text": "", "thoughtSignature": signature})


def _parts_from_hub(message: dict[str, Any], thoughts: bool) -> list[dict[str, Any]]:
    """A hub assistant message as Gemini parts. Reasoning is shown as thought parts only to a client that
    asked for thoughts; either way its signed blocks ride on the first other part, so that they come back."""
    parts: list[dict[str, Any]] = []
    blocks = _list(message.get("thinking_blocks"))
    if thoughts:
        texts = [b["thinking"] for b in blocks if isinstance(b, dict) and b.get("thinking")]
        if not texts and isinstance(message.get("reasoning_content"), str) and message["reasoning_content"]:
            texts = [message["reasoning_content"]]
        parts += [{"text": text, "thought": True} for text in texts]
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(_texts(content))
    if isinstance(content, str) and content:
        parts.append({"text": content})
    parts.extend(_function_call_part(c) for c in _list(message.get("tool_calls")) if isinstance(c, dict))
    packed = pack_thinking(blocks)
    if packed:
        _attach(parts, packed)
    return parts or [{"text": ""}]


def _answer(
    call: Call, ident: str, parts: list[dict[str, Any]], finish: str | None, usage: Any
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    answer: dict[str, Any] = {"candidates": [candidate]}
    if isinstance(usage, Usage):
        answer["usageMetadata"] = usage_metadata(usage)
    answer["modelVersion"] = call.model
    answer["responseId"] = ident
    return answer


def response_from_hub(call: Call, hub: dict[str, Any]) -> bytes:
    if call.kind == "embeddings":
        vectors = [{"values": _dict(item).get("embedding") or []} for item in _list(hub.get("data"))]
        if call.endpoint == "embedContent":
            return orjson.dumps({"embedding": vectors[0] if vectors else {"values": []}})
        return orjson.dumps({"embeddings": vectors})
    choices = _list(hub.get("choices"))
    choice = _dict(choices[0]) if choices else {}
    parts = _parts_from_hub(_dict(choice.get("message")), call.extra.get("thoughts", False))
    finish = FINISH_FROM_HUB.get(choice.get("finish_reason") or "stop", "STOP")
    ident = hub.get("id") if isinstance(hub.get("id"), str) else new_id("resp-")
    return orjson.dumps(_answer(call, ident, parts, finish, hub.get("usage")))


class StreamRenderer:
    """Hub chunks as Gemini stream chunks, for one answer. Text and thoughts go out as they come; a tool
    call goes out whole, as Gemini sends it, once its last argument fragment arrived; signed thinking blocks
    ride on the next part that is not a thought (`pack_thinking`); the last chunk carries the finish reason
    and the usage."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.thoughts = bool(call.extra.get("thoughts"))
        self.ident = new_id("resp-")
        self.pending: dict[str, Any] | None = None  # the tool call whose arguments are still arriving
        self.reasoning: list[str] = []  # the current thinking block's text
        self.blocks: list[dict[str, Any]] = []  # closed thinking blocks, not yet sent
        self.finish: str | None = None
        self.usage: Usage | None = None

    def feed(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        if isinstance(chunk.get("usage"), Usage):
            self.usage = chunk["usage"]
        choices = _list(chunk.get("choices"))
        if not choices:
            return None
        choice = _dict(choices[0])
        delta = _dict(choice.get("delta"))
        parts: list[dict[str, Any]] = []
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            self.reasoning.append(reasoning)
            if self.thoughts:
                parts += self._flush()
                parts.append({"text": reasoning, "thought": True})
        signature = _signature(delta.get("thinking_signature"))
        if signature:
            self.blocks.append(
                {"type": "thinking", "thinking": "".join(self.reasoning), "signature": signature}
            )
            self.reasoning.clear()
        if isinstance(delta.get("redacted_thinking"), str):
            self.blocks.append({"type": "redacted_thinking", "data": delta["redacted_thinking"]})
        content = delta.get("content")
        if isinstance(content, str) and content:
            parts += self._flush()
            parts.append({"text": content})
        for fragment in _list(delta.get("tool_calls")):
            if isinstance(fragment, dict):
                parts += self._fragment(fragment)
        if choice.get("finish_reason"):
            parts += self._flush()
            self.finish = FINISH_FROM_HUB.get(choice["finish_reason"], "STOP")
        return self._chunk(parts) if parts else None

    def end(self) -> dict[str, Any]:
        answer = self._chunk(self._flush() or [{"text": ""}])
        answer["candidates"][0]["finishReason"] = self.finish or "STOP"
        if self.usage is not None:
            answer["usageMetadata"] = usage_metadata(self.usage)
        return answer

    def _fragment(self, fragment: dict[str, Any]) -> list[dict[str, Any]]:
        index = fragment.get("index", 0)
        done = self._flush() if self.pending is not None and self.pending["index"] != index else []
        if self.pending is None:
            self.pending = {"index": index, "id": None, "name": "", "arguments": [], "signature": None}
        pending, function = self.pending, _dict(fragment.get("function"))
        pending["id"] = fragment.get("id") or pending["id"]
        pending["name"] = function.get("name") or pending["name"]
        if isinstance(function.get("arguments"), str):
            pending["arguments"].append(function["arguments"])
        pending["signature"] = fragment.get("signature") or pending["signature"]
        return done

    def _flush(self) -> list[dict[str, Any]]:
        pending, self.pending = self.pending, None
        if pending is None:
            return []
        tool_call = {
            "id": pending["id"],
            "function": {"name": pending["name"], "arguments": "".join(pending["arguments"])},
            "signature": pending["signature"],
        }
        return [_function_call_part(tool_call)]

    def _chunk(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        if self.blocks and any(p.get("thought") is not True for p in parts):
            packed, self.blocks = pack_thinking(self.blocks), []
            if packed:
                _attach(parts, packed)
        return _answer(self.call, self.ident, parts, None, None)


def stream_from_hub(call: Call, chunks: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    framer = _framer(call)
    renderer = StreamRenderer(call)
    for chunk in chunks:
        answer = renderer.feed(chunk)
        if answer is not None:
            yield framer.frame(orjson.dumps(answer))
    yield framer.frame(orjson.dumps(renderer.end())) + framer.close()


# -- outbound: requests to a Gemini upstream --------------------------------------------------------------
def is_gemini3(model: str) -> bool:
    """Gemini 3 and later: thinking levels, and signatures required on the current turn's function calls."""
    found = _GEMINI_MAJOR.match(model.lower())
    return bool(found) and int(found.group(1)) >= 3


def api_root(base_url: str) -> str:
    """The channel's base URL with its API version: `/v1beta` unless the URL names one."""
    base = base_url.rstrip("/")
    return base if _VERSIONED.search(base) else base + "/v1beta"


def build_request(
    call: Call, channel: ChannelInfo, key: UpstreamKey, hub: dict[str, Any] | None
) -> UpstreamRequest:
    upstream_model = str(model_id(channel.upstream_model(call.model)))
    if hub is None:
        action, body = call.endpoint, _native_body(call, upstream_model)
    elif call.kind == "embeddings":
        action, body = "batchEmbedContents", orjson.dumps(_embeddings_from_hub(hub, upstream_model))
    else:
        action = "streamGenerateContent" if call.stream else "generateContent"
        body = orjson.dumps(request_from_hub(hub, upstream_model))
    url = f"{api_root(channel.base_url)}/models/{quote(upstream_model, safe='-._~')}:{action}"
    stream = action == "streamGenerateContent"
    if stream:
        url += "?alt=sse"  # always: a client that asked for the JSON array gets it re-framed
    headers = {
        "x-goog-api-key": key.secret,
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
    }
    return UpstreamRequest("POST", url, headers, body)


def _native_body(call: Call, upstream_model: str) -> bytes:
    """The client's body as it is; only the `model` fields inside an embedding or count request follow a
    mapped model (the URL's must agree with them)."""
    if upstream_model == call.model:
        return call.raw
    body = dict(call.body)
    target = f"models/{upstream_model}"
    if call.endpoint == "batchEmbedContents":
        body["requests"] = [
            {**r, "model": target} if isinstance(r, dict) and "model" in r else r
            for r in _list(body.get("requests"))
        ]
    elif call.endpoint == "embedContent" and "model" in body:
        body["model"] = target
    elif call.endpoint == "countTokens" and "model" in _dict(_f(body, "generateContentRequest")):
        key = "generateContentRequest" if "generateContentRequest" in body else "generate_content_request"
        body[key] = {**body[key], "model": target}
    else:
        return call.raw
    return orjson.dumps(body)


def _embeddings_from_hub(hub: dict[str, Any], model: str) -> dict[str, Any]:
    inputs = hub.get("input")
    inputs = [inputs] if isinstance(inputs, str) else _list(inputs)
    extra = {"outputDimensionality": hub["dimensions"]} if _is_int(hub.get("dimensions")) else {}
    requests = [
        {"model": f"models/{model}", "content": {"parts": [{"text": str(t)}]}, **extra} for t in inputs
    ]
    return {"requests": requests}


def request_from_hub(hub: dict[str, Any], model: str) -> dict[str, Any]:
    """A hub chat request as a GenerateContentRequest for `model`."""
    system, contents = _contents_from_hub(_list(hub.get("messages")), is_gemini3(model))
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    declarations = _declarations(hub.get("tools"))
    if declarations:
        body["tools"] = [{"functionDeclarations": declarations}]
        tool_config = _tool_config(hub.get("tool_choice"))
        if tool_config:
            body["toolConfig"] = tool_config
    config = _generation_config(hub, model)
    if config:
        body["generationConfig"] = config
    return body


def _content_texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content] if content else []
    return [t for t in _texts(content) if t]


def _contents_from_hub(
    messages: list[Any], gemini3: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System and developer messages as systemInstruction parts, the rest as turns; tool results go in user
    turns, and consecutive turns of one role are merged, as Gemini wants them."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, for the results
    last_user = max((i for i, m in enumerate(messages) if _dict(m).get("role") == "user"), default=-1)
    for index, message in enumerate(messages):
        message = _dict(message)
        role = message.get("role")
        if role in ("system", "developer"):
            system += [{"text": t} for t in _content_texts(message.get("content"))]
            continue
        if role == "assistant":
            turn, parts = "model", _model_parts(message, names, gemini3 and index > last_user)
        elif role == "tool":
            turn, parts = "user", [_function_response(message, names)]
        else:
            turn, parts = "user", _user_parts(message.get("content"))
        if not parts:
            continue
        if contents and contents[-1]["role"] == turn:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": turn, "parts": parts})
    return system, contents


def _model_parts(
    message: dict[str, Any], names: dict[str, str], needs_signature: bool
) -> list[dict[str, Any]]:
    """An assistant message as model parts: Gemini's own thought signatures go back where they were;
    other protocols' reasoning cannot be given to Gemini and is left out."""
    parts: list[dict[str, Any]] = []
    text_signature = None
    for block in _list(message.get("thinking_blocks")):
        signature = _signature(_dict(block).get("signature"))
        if signature is None or signature[0] != name:
            continue
        if block.get("thinking"):
            parts.append({"text": block["thinking"], "thought": True, "thoughtSignature": signature[1]})
        else:
            text_signature = text_signature or signature[1]
    texts = _content_texts(message.get("content"))
    if texts or text_signature:
        part: dict[str, Any] = {"text": "".join(texts)}
        if text_signature:
            part["thoughtSignature"] = text_signature
        parts.append(part)
    for number, tool_call in enumerate(c for c in _list(message.get("tool_calls")) if isinstance(c, dict)):
        function = _dict(tool_call.get("function"))
        fn = str(function.get("name") or "")
        if tool_call.get("id"):
            names[tool_call["id"]] = fn
        call: dict[str, Any] = {"name": fn, "args": _args(function.get("arguments"))}
        if tool_call.get("id"):
            call["id"] = tool_call["id"]
        part = {"functionCall": call}
        signature = _signature(tool_call.get("signature"))
        if signature and signature[0] == name:
            part["thoughtSignature"] = signature[1]
        elif number == 0 and needs_signature:
            part["thoughtSignature"] = SKIP_SIGNATURE
        parts.append(part)
    return parts


def _function_response(message: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    ident = message.get("tool_call_id")
    fn = message.get("name") or names.get(ident) or "function"
    content = message.get("content")
    text = content if isinstance(content, str) else "".join(_texts(content))
    try:
        parsed = orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        parsed = None
    response = parsed if isinstance(parsed, dict) else {"output": text}
    if message.get("is_error"):
        response = {"error": parsed if isinstance(parsed, dict) else text}
    result: dict[str, Any] = {"name": fn, "response": response}
    if isinstance(ident, str) and ident:
        result = {"id": ident, **result}
    return {"functionResponse": result}


def _data_url(url: str) -> dict[str, Any] | None:
    head, sep, data = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        return None
    return {"mimeType": head[5:-7] or "application/octet-stream", "data": data}


def _user_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in _list(content):
        part = _dict(part)
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = str(_dict(image).get("url") or "") if isinstance(image, dict) else str(image or "")
            inline = _data_url(url)
            if inline:
                parts.append({"inlineData": inline})
            elif url:
                mime = mimetypes.guess_type(url.split("?", 1)[0])[0]
                parts.append({"fileData": {"fileUri": url, **({"mimeType": mime} if mime else {})}})
        elif kind == "file":
            inline = _data_url(str(_dict(part.get("file")).get("file_data") or ""))
            if inline:
                parts.append({"inlineData": inline})
        elif kind == "input_audio":
            audio = _dict(part.get("input_audio"))
            parts.append(
                {
                    "inlineData": {
                        "mimeType": f"audio/{audio.get('format') or 'wav'}",
                        "data": audio.get("data"),
                    }
                }
            )
    return parts


def _declarations(tools: Any) -> list[dict[str, Any]]:
    declarations = []
    for tool in _list(tools):
        function = _dict(_dict(tool).get("function"))
        if _dict(tool).get("type") != "function" or not function.get("name"):
            continue
        declaration: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            declaration["description"] = function["description"]
        if function.get("parameters"):
            declaration["parametersJsonSchema"] = function["parameters"]
        declarations.append(declaration)
    return declarations


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if isinstance(choice, str) and choice in TOOL_CHOICES:
        return {"functionCallingConfig": {"mode": TOOL_CHOICES[choice]}}
    fn = _dict(_dict(choice).get("function")).get("name")
    if isinstance(fn, str) and fn:
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [fn]}}
    return None


def _generation_config(hub: dict[str, Any], model: str) -> dict[str, Any]:
    config = {
        field: hub[target] for field, target in GENERATION_FIELDS.items() if hub.get(target) is not None
    }
    if isinstance(config.get("stopSequences"), str):
        config["stopSequences"] = [config["stopSequences"]]
    response_format = _dict(hub.get("response_format"))
    if response_format.get("type") == "json_schema":
        config["responseMimeType"] = "application/json"
        schema = _dict(response_format.get("json_schema")).get("schema")
        if isinstance(schema, dict):
            config["responseJsonSchema"] = schema
    elif response_format.get("type") == "json_object":
        config["responseMimeType"] = "application/json"
    thinking = _thinking_config(hub, model)
    if thinking:
        config["thinkingConfig"] = thinking
    return config


def _thinking_config(hub: dict[str, Any], model: str) -> dict[str, Any]:
    """Gemini 3 takes a thinking level; earlier models a token budget, which the hub's effort becomes."""
    thinking: dict[str, Any] = {}
    effort, budget = hub.get("reasoning_effort"), hub.get("thinking_budget")
    if is_gemini3(model) and effort in EFFORT_LEVELS:
        thinking["thinkingLevel"] = EFFORT_LEVELS[effort]
    elif _is_int(budget):
        ceiling = MAX_THINKING_BUDGET_PRO if "pro" in model else MAX_THINKING_BUDGET
        thinking["thinkingBudget"] = min(max(budget, 0), ceiling)
    elif effort in EFFORT_BUDGETS:
        thinking["thinkingBudget"] = EFFORT_BUDGETS[effort]
    if hub.get("include_reasoning"):
        thinking["includeThoughts"] = True
    return thinking


# -- outbound: answers from a Gemini upstream -------------------------------------------------------------
def usage_from(meta: Any) -> Usage | None:
    """Hub usage from `usageMetadata`: the tool-use prompt counts as input, thoughts as output."""
    if not isinstance(meta, dict):
        return None
    counts = {k: v if _is_int(v) else 0 for k, v in meta.items()}
    if not any(_is_int(meta.get(k)) for k in ("promptTokenCount", "candidatesTokenCount", "totalTokenCount")):
        return None
    thoughts = counts.get("thoughtsTokenCount", 0)
    return Usage(
        counts.get("promptTokenCount", 0) + counts.get("toolUsePromptTokenCount", 0),
        counts.get("candidatesTokenCount", 0) + thoughts,
        counts.get("cachedContentTokenCount", 0),
        reasoning_tokens=thoughts,
    )


def _upstream_json(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise GatewayError(
            502,
            "The upstream answered with an unexpected body.",
            "server_error",
            "bad_upstream_response",
            retryable=True,
        )
    return data


def native_response(call: Call, body: bytes) -> tuple[bytes, Usage | None]:
    data = _upstream_json(body)
    return body, usage_from(data.get("usageMetadata")) if call.kind == "chat" else None


def delivered_text(payloads: list[bytes]) -> str:
    """The text a stream carried (answer, thoughts and function calls), to estimate its tokens."""
    out: list[str] = []
    for payload in payloads:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        for candidate in _list(_dict(data).get("candidates"))[:1]:
            for part in _list(_dict(_dict(candidate).get("content")).get("parts")):
                part = _dict(part)
                if isinstance(part.get("text"), str):
                    out.append(part["text"])
                if isinstance(part.get("functionCall"), dict):
                    out.append(orjson.dumps(part["functionCall"]).decode())
    return "".join(out)


def _payload_usage(payload: bytes) -> Usage | None:
    if b'"usageMetadata"' not in payload:
        return None
    try:
        return usage_from(_dict(orjson.loads(payload)).get("usageMetadata"))
    except orjson.JSONDecodeError:
        return None


_events = sse.events


def native_stream(call: Call, chunks: Iterator[bytes], tally: Tally) -> Iterator[bytes]:
    """The upstream's SSE events as they come, as events or as array elements; each repeats the usage so
    far, and the last one seen is kept. Error events pass through as they are."""
    framer = _framer(call)
    tally.text_of = delivered_text
    for payload in _events(chunks):
        found = _payload_usage(payload)
        if found is not None:
            tally.usage = found
        tally.payloads.append(payload)
        yield framer.frame(payload)
    if framer.array:
        yield framer.close()


def _finish(reason: Any, has_calls: bool) -> str:
    finish = FINISH_TO_HUB.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if has_calls and finish == "stop" else finish


def response_to_hub(call: Call, body: bytes) -> dict[str, Any]:
    data = _upstream_json(body)
    if call.kind == "embeddings":
        vectors = _list(data.get("embeddings")) or [data.get("embedding")]
        return {"data": [{"embedding": _dict(v).get("values") or []} for v in vectors], "usage": None}
    candidates = _list(data.get("candidates"))
    candidate = _dict(candidates[0]) if candidates else {}
    parts = [p for p in _list(_dict(candidate.get("content")).get("parts")) if isinstance(p, dict)]
    message = assistant_message(parts, lambda fn, given: given or new_id("call_"))
    if not candidates and _dict(data.get("promptFeedback")).get("blockReason"):
        finish = "content_filter"
    else:
        finish = _finish(candidate.get("finishReason"), bool(message.get("tool_calls")))
    return {
        "id": data.get("responseId"),
        "created": int(time.time()),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage_from(data.get("usageMetadata")),
    }


def _delta(delta: dict[str, Any]) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


class StreamReader:
    """A Gemini stream's chunks as hub chunks: one delta per part; the finish reason when the stream ends."""

    def __init__(self) -> None:
        self.calls = 0
        self.reason: Any = None
        self.blocked = False
        self.started = False

    def feed(self, data: dict[str, Any]) -> Iterator[dict[str, Any]]:
        candidates = _list(data.get("candidates"))
        if not candidates:
            self.blocked = self.blocked or bool(_dict(data.get("promptFeedback")).get("blockReason"))
            return
        candidate = _dict(candidates[0])
        for part in _list(_dict(candidate.get("content")).get("parts")):
            for delta in self._deltas(_dict(part)):
                if not self.started:
                    delta, self.started = {"role": "assistant", **delta}, True
                yield _delta(delta)
        self.reason = candidate.get("finishReason") or self.reason

    def _deltas(self, part: dict[str, Any]) -> list[dict[str, Any]]:
        text, value = part.get("text"), part.get("thoughtSignature")
        signature = [{"thinking_signature": (name, value)}] if isinstance(value, str) and value else []
        function_call = part.get("functionCall")
        if isinstance(function_call, dict):
            args = function_call.get("args")
            fragment: dict[str, Any] = {
                "index": self.calls,
                "id": function_call.get("id") or new_id("call_"),
                "type": "function",
                "function": {
                    "name": str(function_call.get("name") or ""),
                    "arguments": orjson.dumps(args if args is not None else {}).decode(),
                },
            }
            if signature:
                fragment["signature"] = (name, value)
            self.calls += 1
            return [{"tool_calls": [fragment]}]
        if part.get("thought") is True and isinstance(text, str):
            return [{"reasoning_content": text}] + signature if text else signature
        return signature + ([{"content": text}] if isinstance(text, str) and text else [])

    def end(self) -> dict[str, Any]:
        finish = (
            "content_filter" if self.blocked and self.reason is None else _finish(self.reason, self.calls > 0)
        )
        return {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}


def stream_to_hub(call: Call, chunks: Iterator[bytes], tally: Tally) -> Iterator[dict[str, Any]]:
    tally.text_of = delivered_text
    reader = StreamReader()
    for payload in _events(chunks):
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if isinstance(data, list) and len(data) == 1:
            data = data[0]
        if not isinstance(data, dict):
            continue
        if isinstance(data.get("error"), dict):
            message = str(data["error"].get("message") or "upstream error")
            raise GatewayError(502, message, "server_error", "upstream_stream_error")
        usage = usage_from(data.get("usageMetadata"))
        if usage is not None:
            tally.usage = usage
        tally.payloads.append(payload)
        yield from reader.feed(data)
    yield reader.end()
    if tally.usage is not None:
        yield {"choices": [], "usage": tally.usage}


def _retry_delay_s(details: list[Any]) -> int | None:
    """google.rpc.RetryInfo's `retryDelay` (a Duration in JSON: `"7s"`, `"0.5s"`), in whole seconds."""
    for detail in details:
        delay = _dict(detail).get("retryDelay")
        if str(_dict(detail).get("@type", "")).endswith("google.rpc.RetryInfo") and isinstance(delay, str):
            try:
                return max(0, math.ceil(float(delay.rstrip("s"))))
            except (ValueError, OverflowError):
                return None
    return None


def map_error(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and data:
        data = data[0]
    error = _dict(_dict(data).get("error"))
    details = _list(error.get("details"))
    reasons = {d.get("reason") for d in details if isinstance(d, dict) and isinstance(d.get("reason"), str)}
    google_status = error.get("status") if isinstance(error.get("status"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else ""
    disables_key = status == 401 or bool(reasons & KEY_REASONS)
    retry_after = retry_after_s(headers)
    return GatewayError(
        status,
        message or f"The upstream answered {status}.",
        ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        google_status or next(iter(sorted(reasons)), None),
        retryable=disables_key
        or status in (401, 403, 408, 409, 429)
        or status >= 500
        or google_status == "FAILED_PRECONDITION",  # billing or region: another channel may serve
        retry_after=retry_after if retry_after is not None else _retry_delay_s(details),
        upstream_status=status,
        disables_key=disables_key,
    )
