"""Anthropic Messages, in both directions: `POST /v1/messages` (streamed or not) and
`POST /v1/messages/count_tokens`, as the client's protocol and as an upstream's (channel type `anthropic`).

Spec: the Anthropic API reference (https://docs.anthropic.com/en/api/messages, /en/api/messages-streaming,
/en/api/errors) as anthropics/anthropic-sdk-python types it. Errors are `{"type": "error", "error": {"type",
"message"}}`, the SDK picks its exception by status. Streams are `event:`/`data:` pairs whose event name is
the data's `type` (the SDK skips events without a name); usage comes in `message_start` and, cumulative, in
`message_delta`; `message_stop` ends a stream. `input_tokens` excludes cache reads and cache writes, which
the hub counts in `prompt_tokens`.

Where the protocols do not meet (docs/protocols.md lists every such choice):
  * A signature of another protocol rides through an Anthropic client wrapped (`wrap_signature`). A hub tool
    call's own signature (Gemini's `thoughtSignature`) becomes a thinking block with empty text just before
    its `tool_use` block; coming back, such a block (empty text, foreign signature, directly before a
    `tool_use`) is that call's signature again.
  * Thinking text without a signature is shown with `signature: ""`; an empty signature coming back is none,
    and an Anthropic upstream gets only thinking blocks it signed itself.
  * Thinking blocks are shown only to a client that asked for thinking (`thinking` enabled or adaptive), so
    that `content[0].text` keeps working for the others.
  * Into the hub: text-only content becomes one string (DeepSeek and others take no part lists); a tool
    name longer than 64 characters (OpenAI's limit) is shortened and named back in the answer; a
    `metadata.user_id` longer than 64 characters becomes its SHA-256 digest.
  * A stream cut before its `message_delta` keeps `message_start`'s input counts; its output is counted
    from the delivered text.
  * Towards an Anthropic upstream: every system or developer message goes into the top-level `system`, in
    order, mid-conversation ones included; `response_format` becomes an instruction appended to it (the
    Messages API has no JSON mode); thinking is switched off when the last assistant turn calls tools
    without a thinking block of Anthropic's (the API refuses that turn otherwise), and `temperature` and
    `top_k` are left out while thinking (the API refuses them).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from gateway import sse, tokens
from gateway.neutral import Call, GatewayError, Reply, Usage, bad_request
from gateway.protocols.base import Signature, Tally, unwrap_signature, wrap_signature
from gateway.protocols.openai import MODEL_MAX_CHARS, new_id, retry_after_s
from gateway.upstream import UpstreamRequest

if TYPE_CHECKING:
    from gateway.catalog import ChannelInfo, UpstreamKey
    from gateway.relay import Inbound

name = "anthropic"
API_VERSION = "2023-06-01"  # the SDKs' default `anthropic-version`
PATHS = {"messages": "/v1/messages", "count_tokens": "/v1/messages/count_tokens"}
KINDS = {"messages": "chat", "count_tokens": "count"}
PASSED_HEADERS = ("anthropic-version", "anthropic-beta")  # to an Anthropic upstream, when native
DEFAULT_MAX_TOKENS = 4096  # `max_tokens` is required; a hub request may have none
MIN_THINKING_BUDGET = 1024  # the API's minimum `budget_tokens`
TOOL_NAME_MAX_CHARS = 64  # OpenAI's limit on a function's name; Anthropic's is 128
USER_ID_MAX_CHARS = 64  # longer ids (Claude Code sends a JSON object) travel as a digest in hub `user`
JSON_HEADERS = [("Content-Type", "application/json")]
STREAM_HEADERS = [
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
]

# status -> error.type (api-contracts.md section 5); the SDK raises its typed exception by status
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# an upstream's error.type -> the OpenAI-flavoured type a GatewayError carries
ERROR_TYPES_TO_HUB = {
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "billing_error": "insufficient_quota",
    "permission_error": "permission_error",
    "not_found_error": "invalid_request_error",
    "request_too_large": "invalid_request_error",
    "rate_limit_error": "rate_limit_error",
    "api_error": "server_error",
    "overloaded_error": "server_error",
    "timeout_error": "server_error",
}
STOP_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
TOOL_CHOICE_TO_HUB = {"auto": "auto", "any": "required", "none": "none"}
TOOL_CHOICE_FROM_HUB = {"auto": "auto", "required": "any", "none": "none"}
SAMPLING = ("temperature", "top_p", "top_k")  # same names on both sides
# output_config.effort -> hub reasoning_effort
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
DEFAULT_EFFORT = "medium"
THINKING_TYPES = ("enabled", "adaptive", "between_tools")
# hub reasoning_effort -> thinking budget_tokens, towards an Anthropic upstream
# `none` asks for no thinking; OpenAI's newer `xhigh` and `max` get the largest budget
EFFORT_BUDGETS = {
    "none": 0,
    "minimal": 1024,
    "low": 1024,
    "medium": 4096,
    "high": 16384,
    "xhigh": 32000,
    "max": 32000,
}
TOOL_ID = re.compile(r"[^A-Za-z0-9_-]")  # what a tool_use id may not contain
JSON_INSTRUCTION = "Answer with a single valid JSON object only: no prose before or after it, no code fences."
SCHEMA_INSTRUCTION = (
    "Answer with JSON only (no prose, no code fences) that is valid against this JSON Schema:\n"
)


# -- inbound: parsing --------------------------------------------------------------------------------
def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def parse_request(endpoint: str, raw: bytes, inbound: Inbound | None = None) -> Call:
    body = _json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model: Field required", "model")
    if len(model) > MODEL_MAX_CHARS:
        raise bad_request(f"model: String should have at most {MODEL_MAX_CHARS} characters", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise bad_request("messages: Input should be a valid list of message objects", "messages")
    max_tokens = body.get("max_tokens")
    if endpoint == "messages":
        if max_tokens is None:
            raise bad_request("max_tokens: Field required", "max_tokens")
        if not messages:
            raise bad_request("messages: at least one message is required", "messages")
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
    ):
        raise bad_request("max_tokens: Input should be an integer greater than or equal to 1", "max_tokens")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("stream: Input should be a valid boolean", "stream")
    stream = bool(stream) and endpoint == "messages"
    extra = {"headers": _passed_headers(inbound), "beta": _beta_query(inbound)}
    return Call(
        endpoint, model, body, raw, stream, stream, max_tokens, extra, protocol=name, kind=KINDS[endpoint]
    )


def _passed_headers(inbound: Inbound | None) -> dict[str, str]:
    headers = {"anthropic-version": API_VERSION}
    if inbound is not None:
        for header in PASSED_HEADERS:
            value = inbound.headers.get(header)
            if value:
                headers[header] = value
    return headers


def _beta_query(inbound: Inbound | None) -> bool:
    """The SDKs' beta resources add `?beta=true`; the API takes it, so a native call keeps it."""
    query = getattr(inbound, "query", "") or ""
    return "beta=true" in query.split("&")


# -- inbound: errors ---------------------------------------------------------------------------------
def error_type(status: int) -> str:
    return ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def _error_body(err: GatewayError) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": error_type(err.status), "message": err.message}})


def render_error(err: GatewayError) -> Reply:
    headers = list(JSON_HEADERS)
    if err.retry_after is not None:
        headers.append(("Retry-After", str(err.retry_after)))
    return Reply(err.status, headers, _error_body(err))


def stream_error(err: GatewayError, call: Call) -> bytes:
    return frame(b"error", _error_body(err))


def stream_headers(call: Call) -> list[tuple[str, str]]:
    return list(STREAM_HEADERS)


def frame(event: bytes, payload: bytes) -> bytes:
    return b"event: " + event + b"\ndata: " + payload + b"\n\n"


def _event(data: dict[str, Any]) -> bytes:
    return frame(data["type"].encode(), orjson.dumps(data))


# -- inbound: the request as a hub request -----------------------------------------------------------
def request_to_hub(call: Call) -> dict[str, Any]:
    body = call.body
    hub: dict[str, Any] = {"model": call.model, "messages": _hub_messages(body), "stream": call.stream}
    if call.max_output_tokens is not None:
        hub["max_tokens"] = call.max_output_tokens
    for field in SAMPLING:
        value = body.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            hub[field] = value
    stops = body.get("stop_sequences")
    if isinstance(stops, list) and stops:
        hub["stop"] = [s for s in stops if isinstance(s, str)]
    tools = [t for t in map(_hub_tool, body.get("tools") or ()) if t is not None]
    if tools:
        hub["tools"] = tools
        _tool_choice_to_hub(body.get("tool_choice"), hub)
    _thinking_to_hub(body, hub)
    user = (body.get("metadata") or {}).get("user_id") if isinstance(body.get("metadata"), dict) else None
    if isinstance(user, str) and user:
        hub["user"] = user if len(user) <= USER_ID_MAX_CHARS else hashlib.sha256(user.encode()).hexdigest()
    schema = _output_schema(body)
    if schema is not None:
        hub["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    names = _shorten_tool_names(hub)
    if names:
        call.extra["tool_names"] = names
    return hub


def _short_name(name: str, table: dict[str, str]) -> str:
    if len(name) <= TOOL_NAME_MAX_CHARS:
        return name
    short = name[: TOOL_NAME_MAX_CHARS - 9] + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
    table[short] = name
    return short


def _shorten_tool_names(hub: dict[str, Any]) -> dict[str, str]:
    """Tool names longer than OpenAI's limit (Claude Code's `mcp__<server>__<tool>` can be) shortened in
    the hub request, everywhere they occur; the table (short -> long) names them back in the answer."""
    table: dict[str, str] = {}
    functions = [t["function"] for t in hub.get("tools") or ()]
    if isinstance(hub.get("tool_choice"), dict):
        functions.append(hub["tool_choice"]["function"])
    for message in hub["messages"]:
        functions.extend(c["function"] for c in message.get("tool_calls") or ())
    for function in functions:
        function["name"] = _short_name(function["name"], table)
    for message in hub["messages"]:
        if message["role"] == "tool" and "name" in message:
            message["name"] = _short_name(message["name"], table)
    return table


def _long_name(call: Call, name: Any) -> str:
    name = str(name or "")
    return (call.extra.get("tool_names") or {}).get(name, name)


def _joined_text(value: Any, separator: str = "\n") -> str:
    """The text of a string or of a list of blocks (their `text`, and a text document's data)."""
    if isinstance(value, str):
        return value
    parts = []
    for block in value if isinstance(value, list) else ():
        if isinstance(block, dict) and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif isinstance(block, dict) and isinstance(block.get("content"), list):  # search results
            parts.append(_joined_text(block["content"], separator))
    return separator.join(parts)


def _hub_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = _joined_text(body.get("system"), "\n\n")
    if system:
        messages.append({"role": "system", "content": system})
    names: dict[str, str] = {}  # tool_use id -> tool name, for the tool messages (Gemini needs the name)
    for message in body.get("messages") or ():
        role, content = message.get("role"), message.get("content")
        if role == "assistant":
            messages.append(_hub_assistant(content, names))
        elif role == "system":  # Claude Code's mid-conversation system message: kept where it stands
            messages.append({"role": "system", "content": _joined_text(content, "\n\n")})
        else:
            messages.extend(_hub_user(content, names))
    return messages


def _hub_user(content: Any, names: dict[str, str]) -> list[dict[str, Any]]:
    """A user turn as hub messages: its tool results first, as tool messages, then the rest, if any."""
    if not isinstance(content, list):
        return [{"role": "user", "content": content if isinstance(content, str) else ""}]
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_result":
            message, images = _hub_tool_result(block, names)
            results.append(message)
            parts.extend(images)  # a tool message holds text only: its images follow in the user turn
        elif (part := _hub_part(block)) is not None:
            parts.append(part)
    if parts:
        results.append({"role": "user", "content": _flattened(parts)})
    elif not results:
        results.append({"role": "user", "content": ""})
    return results


def _flattened(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text-only content as one string: several OpenAI-compatible servers (DeepSeek) take no part lists."""
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _hub_part(block: dict[str, Any]) -> dict[str, Any] | None:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": str(block.get("text") or "")}
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    if kind == "image":
        url = _source_url(source)
        return {"type": "image_url", "image_url": {"url": url}} if url else None
    if kind == "document":
        return _hub_document(block, source)
    if kind == "search_result":
        return {"type": "text", "text": _joined_text(block.get("content"))}
    return None  # thinking in a user turn, server tool results, container uploads: nothing a hub takes


def _source_url(source: dict[str, Any]) -> str | None:
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        return f"data:{source.get('media_type') or 'application/octet-stream'};base64,{source['data']}"
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return source["url"]
    return None


def _hub_document(block: dict[str, Any], source: dict[str, Any]) -> dict[str, Any] | None:
    title = block.get("title") if isinstance(block.get("title"), str) else None
    kind = source.get("type")
    if kind == "base64" and isinstance(source.get("data"), str):
        url = _source_url(source)
        return {"type": "file", "file": {"file_data": url, "filename": title or "document.pdf"}}
    if kind == "text" and isinstance(source.get("data"), str):
        return {"type": "text", "text": source["data"]}
    if kind == "content":
        return {"type": "text", "text": _joined_text(source.get("content"))}
    if kind == "url" and isinstance(source.get("url"), str):  # a hub file part takes data, not links
        return {"type": "text", "text": f"[document: {source['url']}]"}
    return None


def _hub_tool_result(
    block: dict[str, Any], names: dict[str, str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    content = block.get("content")
    images = []
    if isinstance(content, list):
        images = [
            p for b in content if isinstance(b, dict) and b.get("type") == "image" if (p := _hub_part(b))
        ]
    call_id = str(block.get("tool_use_id") or "")
    message: dict[str, Any] = {"role": "tool", "tool_call_id": call_id, "content": _joined_text(content)}
    if block.get("is_error") is True:
        message["is_error"] = True
    if call_id in names:
        message["name"] = names[call_id]
    return message, images


def _client_signature(text: Any) -> Signature | None:
    """A signature a client sent back; an empty one is none (see the module docstring)."""
    return unwrap_signature(text, name) if isinstance(text, str) and text else None


def _hub_assistant(content: Any, names: dict[str, str]) -> dict[str, Any]:
    if not isinstance(content, list):
        return {"role": "assistant", "content": content if isinstance(content, str) else ""}
    texts: list[str] = []
    thinking: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    carried: Signature | None = None  # a foreign signature in an empty thinking block, for the next tool_use
    for block in content:
        if not isinstance(block, dict):
            continue
        kind, held, carried = block.get("type"), carried, None
        if held is not None and kind != "tool_use":  # it belonged to no call after all
            thinking.append({"type": "thinking", "thinking": "", "signature": held})
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "thinking":
            signature = _client_signature(block.get("signature"))
            text = str(block.get("thinking") or "")
            if signature is not None and signature[0] != name and not text:
                carried = signature
            else:
                thinking.append({"type": "thinking", "thinking": text, "signature": signature})
        elif kind == "redacted_thinking":
            thinking.append({"type": "redacted_thinking", "data": str(block.get("data") or "")})
        elif kind == "tool_use":
            calls.append(_hub_tool_call(block, held, names))
    if carried is not None:
        thinking.append({"type": "thinking", "thinking": "", "signature": carried})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    reasoning = "".join(b["thinking"] for b in thinking if b["type"] == "thinking")
    if reasoning:
        message["reasoning_content"] = reasoning
    if thinking:
        message["thinking_blocks"] = thinking
    if calls:
        message["tool_calls"] = calls
    return message


def _hub_tool_call(
    block: dict[str, Any], signature: Signature | None, names: dict[str, str]
) -> dict[str, Any]:
    call_id = str(block.get("id") or new_id("toolu_"))
    tool = str(block.get("name") or "")
    names[call_id] = tool
    arguments = orjson.dumps(block.get("input") if isinstance(block.get("input"), dict) else {}).decode()
    call: dict[str, Any] = {
        "id": call_id,
        "type": "function",
        "function": {"name": tool, "arguments": arguments},
    }
    if signature is not None:
        call["signature"] = signature
    return call


def _hub_tool(tool: Any) -> dict[str, Any] | None:
    """A client tool as a hub function; server tools (web search, code execution, ...) have no hub form."""
    if (
        not isinstance(tool, dict)
        or tool.get("type") not in (None, "custom")
        or not isinstance(tool.get("name"), str)
    ):
        return None
    schema = tool.get("input_schema")
    function = {
        "name": tool["name"],
        "parameters": schema if isinstance(schema, dict) else {"type": "object"},
    }
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice_to_hub(choice: Any, hub: dict[str, Any]) -> None:
    if not isinstance(choice, dict):
        return
    kind = choice.get("type")
    if kind in TOOL_CHOICE_TO_HUB:
        hub["tool_choice"] = TOOL_CHOICE_TO_HUB[kind]
    elif kind == "tool" and isinstance(choice.get("name"), str):
        hub["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    if choice.get("disable_parallel_tool_use") is True:
        hub["parallel_tool_calls"] = False


def wants_thinking(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in THINKING_TYPES


def _thinking_to_hub(body: dict[str, Any], hub: dict[str, Any]) -> None:
    config = body.get("output_config") if isinstance(body.get("output_config"), dict) else {}
    effort = EFFORTS.get(config.get("effort"))
    thinking = body.get("thinking") if isinstance(body.get("thinking"), dict) else {}
    if thinking.get("type") == "enabled":
        hub["include_reasoning"] = True
        budget = thinking.get("budget_tokens")
        if isinstance(budget, int) and not isinstance(budget, bool):
            hub["thinking_budget"] = budget
    elif thinking.get("type") in THINKING_TYPES:  # adaptive: the model decides, the effort guides it
        hub["include_reasoning"] = True
        effort = effort or DEFAULT_EFFORT
    if effort is not None:
        hub["reasoning_effort"] = effort


def _output_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """Structured outputs: `output_config.format`, or the older beta's top-level `output_format`."""
    config = body.get("output_config") if isinstance(body.get("output_config"), dict) else {}
    for found in (config.get("format"), body.get("output_format")):
        if (
            isinstance(found, dict)
            and found.get("type") == "json_schema"
            and isinstance(found.get("schema"), dict)
        ):
            return found["schema"]
    return None


def estimate_count(call: Call) -> bytes:
    """`count_tokens` answered locally, for a model no Anthropic channel serves: the prompt as the hub
    counts it, plus the tool definitions."""
    hub = request_to_hub(call)
    total = tokens.count_prompt(call.model, "chat", hub)
    if hub.get("tools"):
        total += tokens.count(call.model, orjson.dumps(hub["tools"]).decode())
    return orjson.dumps({"input_tokens": total})


# -- inbound: hub answers as Anthropic messages ------------------------------------------------------
def usage_json(usage: Usage | None) -> dict[str, Any]:
    if usage is None:
        return {
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
    out = {
        "input_tokens": max(0, usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
    }
    if usage.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return out


def _signature_text(signature: Any) -> str:
    """A hub Signature (a tuple, or a list once stored as JSON) as the text an Anthropic client echoes."""
    if isinstance(signature, tuple | list) and len(signature) == 2:
        return wrap_signature((str(signature[0]), str(signature[1])), name)
    return ""


def _thinking_json(block: dict[str, Any]) -> dict[str, Any]:
    if block.get("type") == "redacted_thinking":
        return {"type": "redacted_thinking", "data": str(block.get("data") or "")}
    return {
        "type": "thinking",
        "thinking": str(block.get("thinking") or ""),
        "signature": _signature_text(block.get("signature")),
    }


def _arguments(text: Any) -> dict[str, Any]:
    """Tool arguments (a JSON string) as the object a `tool_use` block holds; {} when they are no object."""
    try:
        value = orjson.loads(text) if isinstance(text, str) and text.strip() else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _content_json(call: Call, message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if wants_thinking(call.body):
        thinking = message.get("thinking_blocks") or []
        if not thinking and message.get("reasoning_content"):
            thinking = [{"type": "thinking", "thinking": message["reasoning_content"], "signature": None}]
        blocks.extend(_thinking_json(b) for b in thinking if isinstance(b, dict))
    text = message.get("content")
    if isinstance(text, str) and text:
        blocks.append({"type": "text", "text": text})
    for tool_call in message.get("tool_calls") or ():
        if tool_call.get("signature"):
            blocks.append(
                {"type": "thinking", "thinking": "", "signature": _signature_text(tool_call["signature"])}
            )
        function = tool_call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": tool_call.get("id") or new_id("toolu_"),
                "name": _long_name(call, function.get("name")),
                "input": _arguments(function.get("arguments")),
            }
        )
    return blocks or [{"type": "text", "text": ""}]


def response_from_hub(call: Call, hub: dict[str, Any]) -> bytes:
    choice = (hub.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    body = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": _content_json(call, message),
        "stop_reason": FINISH_TO_STOP.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": usage_json(hub.get("usage")),
    }
    return orjson.dumps(body)


class _EventWriter:
    """Hub chunks as Anthropic stream events: opens, fills and closes one content block at a time."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.show_thinking = wants_thinking(call.body)
        self.index = -1  # of the last block opened
        self.open: str | None = None  # the type of the block open now
        self.tools: dict[int, int] = {}  # hub tool-call index -> block index
        self.finish: str | None = None
        self.usage: Usage | None = None

    def start(self) -> bytes:
        message = {
            "id": new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": self.call.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},  # known at the end: message_delta has it all
        }
        return _event({"type": "message_start", "message": message})

    def chunk(self, chunk: dict[str, Any]) -> Iterator[bytes]:
        if chunk.get("usage") is not None:
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        if not choices:
            return
        choice = choices[0]
        delta = choice.get("delta") or {}
        if self.show_thinking:
            yield from self._thinking(delta)
        if isinstance(delta.get("content"), str) and delta["content"]:
            if self.open != "text":
                yield from self._start({"type": "text", "text": ""})
            yield self._delta({"type": "text_delta", "text": delta["content"]})
        for tool_call in delta.get("tool_calls") or ():
            yield from self._tool_call(tool_call)
        if choice.get("finish_reason"):
            self.finish = choice["finish_reason"]

    def _thinking(self, delta: dict[str, Any]) -> Iterator[bytes]:
        if isinstance(delta.get("reasoning_content"), str) and delta["reasoning_content"]:
            if self.open != "thinking":
                yield from self._start({"type": "thinking", "thinking": "", "signature": ""})
            yield self._delta({"type": "thinking_delta", "thinking": delta["reasoning_content"]})
        if delta.get("thinking_signature"):
            if self.open != "thinking":
                yield from self._start({"type": "thinking", "thinking": "", "signature": ""})
            yield self._delta(
                {"type": "signature_delta", "signature": _signature_text(delta["thinking_signature"])}
            )
            yield from self._close()
        if isinstance(delta.get("redacted_thinking"), str):
            yield from self._start({"type": "redacted_thinking", "data": delta["redacted_thinking"]})
            yield from self._close()

    def _tool_call(self, tool_call: dict[str, Any]) -> Iterator[bytes]:
        position = tool_call.get("index", 0)
        function = tool_call.get("function") or {}
        if position not in self.tools:
            if tool_call.get("signature"):
                yield from self._start({"type": "thinking", "thinking": "", "signature": ""})
                yield self._delta(
                    {"type": "signature_delta", "signature": _signature_text(tool_call["signature"])}
                )
            block = {
                "type": "tool_use",
                "id": tool_call.get("id") or new_id("toolu_"),
                "name": _long_name(self.call, function.get("name")),
            }
            yield from self._start({**block, "input": {}})
            self.tools[position] = self.index
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            index = self.tools[position]
            yield _event(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": arguments},
                }
            )

    def _start(self, block: dict[str, Any]) -> Iterator[bytes]:
        yield from self._close()
        self.index += 1
        self.open = block["type"]
        yield _event({"type": "content_block_start", "index": self.index, "content_block": block})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _event({"type": "content_block_delta", "index": self.index, "delta": delta})

    def _close(self) -> Iterator[bytes]:
        if self.open is not None:
            self.open = None
            yield _event({"type": "content_block_stop", "index": self.index})

    def end(self) -> Iterator[bytes]:
        yield from self._close()
        finish = self.finish or ("tool_calls" if self.tools else "stop")
        stop = {"stop_reason": FINISH_TO_STOP.get(finish, "end_turn"), "stop_sequence": None}
        yield _event({"type": "message_delta", "delta": stop, "usage": usage_json(self.usage)})
        yield _event({"type": "message_stop"})


def stream_from_hub(call: Call, chunks: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    chunks = iter(chunks)
    first = next(chunks, None)  # an upstream failing before its first event raises here, before any byte
    writer = _EventWriter(call)
    yield writer.start()
    if first is not None:
        yield from writer.chunk(first)
    for chunk in chunks:
        yield from writer.chunk(chunk)
    yield from writer.end()


# -- outbound: requests ------------------------------------------------------------------------------
def _url(channel: ChannelInfo, path: str) -> str:
    base = channel.base_url.rstrip("/")
    return base.removesuffix("/v1") + path  # the API's root, as the SDK takes it; `.../v1` works too


def build_request(
    call: Call, channel: ChannelInfo, key: UpstreamKey, hub: dict[str, Any] | None
) -> UpstreamRequest:
    upstream_model = channel.upstream_model(call.model)
    headers = {"x-api-key": key.secret, "anthropic-version": API_VERSION, "Content-Type": "application/json"}
    if hub is None:  # native: the client's bytes, its version and betas
        headers.update(call.extra.get("headers") or {})
        body = (
            call.raw if upstream_model == call.model else orjson.dumps({**call.body, "model": upstream_model})
        )
        url = _url(channel, PATHS[call.endpoint]) + ("?beta=true" if call.extra.get("beta") else "")
    elif call.kind == "chat":
        body = orjson.dumps(
            body_from_hub(hub, upstream_model, call.stream, channel.settings.get("max_output_tokens"))
        )
        url = _url(channel, PATHS["messages"])
    else:
        raise GatewayError(
            400,
            f"Anthropic channels do not serve {call.kind}.",
            "invalid_request_error",
            "unsupported_endpoint",
            retryable=True,
        )
    headers["Accept"] = "text/event-stream" if call.stream else "application/json"
    return UpstreamRequest("POST", url, headers, body)


def body_from_hub(
    hub: dict[str, Any], model: str, stream: bool, ceiling: int | None = None
) -> dict[str, Any]:
    """The Messages body for a hub request; `ceiling` is the channel's `max_output_tokens`, which the thinking
    budget and the answer must share."""
    system, messages = _anthropic_messages(hub.get("messages") or [])
    instruction = _format_instruction(hub.get("response_format"))
    if instruction:
        system.append(instruction)
    max_tokens = hub.get("max_tokens") if isinstance(hub.get("max_tokens"), int) else None
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens or DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if system:
        body["system"] = "\n\n".join(system)
    budget = _thinking_budget(hub, messages)
    if budget and ceiling:
        budget = min(budget, ceiling // 2)
        budget = budget if budget >= MIN_THINKING_BUDGET else 0
    if budget:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if body["max_tokens"] <= budget:  # budget_tokens must stay below max_tokens
            body["max_tokens"] = budget + (max_tokens or DEFAULT_MAX_TOKENS)
    if ceiling:
        body["max_tokens"] = min(body["max_tokens"], ceiling)
    _sampling_from_hub(hub, body, thinking=bool(budget))
    tools = [
        _anthropic_tool(t)
        for t in hub.get("tools") or ()
        if isinstance(t, dict) and t.get("type") == "function"
    ]
    if tools:
        body["tools"] = tools
        choice = _tool_choice_from_hub(hub.get("tool_choice"), hub.get("parallel_tool_calls"))
        if choice:
            body["tool_choice"] = choice
    user = hub.get("user")
    if isinstance(user, str) and user:
        body["metadata"] = {"user_id": user[:256]}
    if stream:
        body["stream"] = True
    return body


def _sampling_from_hub(hub: dict[str, Any], body: dict[str, Any], thinking: bool) -> None:
    temperature, top_p, top_k = (hub.get(f) for f in SAMPLING)
    if isinstance(temperature, int | float) and not thinking:  # thinking takes only the default
        body["temperature"] = min(1.0, max(0.0, float(temperature)))
    if isinstance(top_p, int | float) and (not thinking or top_p >= 0.95):
        body["top_p"] = top_p
    if isinstance(top_k, int) and not thinking:
        body["top_k"] = top_k
    stops = hub.get("stop")
    stops = [stops] if isinstance(stops, str) else stops
    if isinstance(stops, list):
        kept = [s for s in stops if isinstance(s, str) and s.strip()]  # the API refuses blank ones
        if kept:
            body["stop_sequences"] = kept


def _thinking_budget(hub: dict[str, Any], messages: list[dict[str, Any]]) -> int:
    budget = hub.get("thinking_budget")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:  # Gemini's -1 is "dynamic"
        effort = hub.get("reasoning_effort")
        if effort in EFFORT_BUDGETS:
            budget = EFFORT_BUDGETS[effort]
        else:
            budget = EFFORT_BUDGETS[DEFAULT_EFFORT] if hub.get("include_reasoning") else 0
    if not budget:
        return 0
    last = next((m for m in reversed(messages) if m["role"] == "assistant"), None)
    if last is not None and any(b["type"] == "tool_use" for b in last["content"]):
        if last["content"][0]["type"] not in ("thinking", "redacted_thinking"):
            return 0  # the API refuses thinking on a tool turn that has no thinking block of its own
    return max(MIN_THINKING_BUDGET, budget)


def _format_instruction(response_format: Any) -> str | None:
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_object":
        return JSON_INSTRUCTION
    spec = response_format.get("json_schema")
    if (
        response_format.get("type") == "json_schema"
        and isinstance(spec, dict)
        and isinstance(spec.get("schema"), dict)
    ):
        return SCHEMA_INSTRUCTION + orjson.dumps(spec["schema"]).decode()
    return None


def _anthropic_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool.get("function") or {}
    schema = function.get("parameters") if isinstance(function.get("parameters"), dict) else {}
    out = {"name": function.get("name") or "", "input_schema": {"type": "object", **schema}}
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _tool_choice_from_hub(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None = None
    if isinstance(choice, str) and choice in TOOL_CHOICE_FROM_HUB:
        out = {"type": TOOL_CHOICE_FROM_HUB[choice]}
    elif isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
        out = {"type": "tool", "name": choice["function"]["name"]}
    if parallel is False and (out is None or out["type"] != "none"):
        out = {**(out or {"type": "auto"}), "disable_parallel_tool_use": True}
    return out


def _tool_id(value: Any) -> str:
    return TOOL_ID.sub("_", str(value or "")) or new_id("toolu_")


def _anthropic_messages(hub_messages: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Hub messages as (system texts, alternating Anthropic turns): tool results go into user turns, and
    consecutive turns of one role merge, tool results first (the API wants both)."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in hub_messages:
        role = message.get("role")
        if role in ("system", "developer"):
            text = _plain_text(message.get("content"))
            if text:
                system.append(text)
            continue
        if role == "assistant":
            blocks = _assistant_blocks(message)
        elif role == "tool":
            role, blocks = "user", [_tool_result_block(message)]
        else:
            role, blocks = "user", _user_blocks(message.get("content"))
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            turn["content"].sort(key=lambda b: b["type"] != "tool_result")  # stable: order kept otherwise
    return system, turns


def _plain_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(
        p["text"] for p in content or () if isinstance(p, dict) and isinstance(p.get("text"), str)
    )


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content or ():
        block = _user_block(part) if isinstance(part, dict) else None
        if block is not None:
            blocks.append(block)
    return blocks


def _user_block(part: dict[str, Any]) -> dict[str, Any] | None:
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": part.get("text")} if part.get("text") else None
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return _image_block(url) if isinstance(url, str) else None
    if kind == "file":
        return _document_block(part.get("file") if isinstance(part.get("file"), dict) else {})
    return None  # audio: the Messages API takes none


def _data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:` URL."""
    if not url.startswith("data:"):
        return None
    head, _, data = url[5:].partition(",")
    return (head.split(";")[0] or "application/octet-stream"), data


def _image_block(url: str) -> dict[str, Any]:
    found = _data_url(url)
    if found is None:
        return {"type": "image", "source": {"type": "url", "url": url}}
    return {"type": "image", "source": {"type": "base64", "media_type": found[0], "data": found[1]}}


def _document_block(file: dict[str, Any]) -> dict[str, Any] | None:
    found = _data_url(file["file_data"]) if isinstance(file.get("file_data"), str) else None
    if found is None:
        return None  # an uploaded file's id means nothing to another vendor
    media, data = found
    if media.startswith("text/"):
        try:
            text = base64.b64decode(data).decode()
        except ValueError:
            return None
        source = {"type": "text", "media_type": "text/plain", "data": text}
    else:
        source = {"type": "base64", "media_type": media, "data": data}
    block: dict[str, Any] = {"type": "document", "source": source}
    if isinstance(file.get("filename"), str) and file["filename"]:
        block["title"] = file["filename"]
    return block


def _own_signature(signature: Any) -> str | None:
    if isinstance(signature, tuple | list) and len(signature) == 2 and signature[0] == name and signature[1]:
        return str(signature[1])
    return None


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for block in message.get("thinking_blocks") or ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "redacted_thinking" and block.get("data"):
            blocks.append({"type": "redacted_thinking", "data": block["data"]})
        elif (signature := _own_signature(block.get("signature"))) is not None:
            blocks.append(
                {"type": "thinking", "thinking": block.get("thinking") or "", "signature": signature}
            )
    text = _plain_text(message.get("content"))
    if text:
        blocks.append({"type": "text", "text": text})
    for tool_call in message.get("tool_calls") or ():
        function = tool_call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": _tool_id(tool_call.get("id")),
                "name": function.get("name") or "",
                "input": _arguments(function.get("arguments")),
            }
        )
    return blocks


def _tool_result_block(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": _tool_id(message.get("tool_call_id"))}
    if isinstance(content, list):
        block["content"] = _user_blocks(content)
    else:
        block["content"] = content if isinstance(content, str) else ""
    if message.get("is_error") is True:
        block["is_error"] = True
    return block


# -- outbound: answers -------------------------------------------------------------------------------
def usage_from(data: Any) -> Usage | None:
    """An Anthropic `usage` object, normalised: cache reads and writes count as prompt tokens."""
    if not isinstance(data, dict):
        return None
    fields = [
        data.get(f)
        for f in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    ]
    if not isinstance(fields[0], int) and not isinstance(fields[1], int):
        return None
    prompt, completion, read, write = (v if isinstance(v, int) else 0 for v in fields)
    details = data.get("output_tokens_details")
    thinking = details.get("thinking_tokens") if isinstance(details, dict) else None
    return Usage(
        prompt + read + write,
        completion,
        read,
        cache_write_tokens=write,
        reasoning_tokens=thinking if isinstance(thinking, int) else 0,
    )


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _bad_upstream("The upstream answered with invalid JSON.") from None
    if not isinstance(data, dict):
        raise _bad_upstream("The upstream answered with an unexpected body.")
    return data


def _bad_upstream(message: str) -> GatewayError:
    return GatewayError(502, message, "server_error", "bad_upstream_response", retryable=True)


def native_response(call: Call, body: bytes) -> tuple[bytes, Usage | None]:
    return body, usage_from(_json(body).get("usage"))


def response_to_hub(call: Call, body: bytes) -> dict[str, Any]:
    data = _json(body)
    texts: list[str] = []
    thinking: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for block in data.get("content") or ():
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "thinking":
            signature = (name, block["signature"]) if block.get("signature") else None
            thinking.append(
                {"type": "thinking", "thinking": str(block.get("thinking") or ""), "signature": signature}
            )
        elif kind == "redacted_thinking":
            thinking.append({"type": "redacted_thinking", "data": str(block.get("data") or "")})
        elif kind == "tool_use":
            arguments = orjson.dumps(
                block.get("input") if isinstance(block.get("input"), dict) else {}
            ).decode()
            function = {"name": str(block.get("name") or ""), "arguments": arguments}
            calls.append(
                {"id": str(block.get("id") or new_id("toolu_")), "type": "function", "function": function}
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    reasoning = "".join(b["thinking"] for b in thinking if b["type"] == "thinking")
    if reasoning:
        message["reasoning_content"] = reasoning
    if thinking:
        message["thinking_blocks"] = thinking
    if calls:
        message["tool_calls"] = calls
    finish = STOP_TO_FINISH.get(data.get("stop_reason") or "", "tool_calls" if calls else "stop")
    return {
        "id": data.get("id"),
        "created": int(time.time()),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage_from(data.get("usage")),
    }


# -- outbound: streams -------------------------------------------------------------------------------
events = sse.named_events


class _UsageReader:
    """Usage as a stream reports it, recorded in the tally: in `message_start`, then cumulative in each
    `message_delta` (whose absent fields keep their `message_start` values). A stream cut before its
    `message_delta` has only `message_start`'s output count (1): `settle` counts the text delivered so far
    as the output instead, marked estimated, and keeps the exact input counts."""

    def __init__(self, call: Call, tally: Tally) -> None:
        self.model = call.model
        self.tally = tally
        self.seen: dict[str, Any] = {}
        self.final = False
        tally.text_of = delivered_text

    def read(self, event: bytes, data: dict[str, Any]) -> None:
        found = (data.get("message") or {}).get("usage") if event == b"message_start" else data.get("usage")
        if not isinstance(found, dict):
            return
        self.seen.update({k: v for k, v in found.items() if v is not None})
        self.final = self.final or event == b"message_delta"
        usage = usage_from(self.seen)
        if usage is not None:
            self.tally.usage = usage

    def settle(self) -> None:
        usage = self.tally.usage
        if self.final or usage is None:
            return
        delivered = tokens.count(self.model, delivered_text(self.tally.payloads))
        completion = max(usage.completion_tokens, delivered)
        self.tally.usage = dataclasses.replace(usage, completion_tokens=completion, source="estimated")


def native_stream(call: Call, chunks: Iterator[bytes], tally: Tally) -> Iterator[bytes]:
    """The upstream's events as they come, event names kept; usage read from message_start/message_delta
    only, so that content events pass unparsed."""
    usage = _UsageReader(call, tally)
    try:
        for event, payload in events(chunks):
            tally.payloads.append(payload)
            if event in (b"message_start", b"message_delta"):
                try:
                    data = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    data = None
                if isinstance(data, dict):
                    usage.read(event, data)
            yield frame(event, payload)
    finally:
        usage.settle()


def _hub_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _block_start(block: dict[str, Any], tools: list[int], index: int) -> dict[str, Any] | None:
    kind = block.get("type")
    if kind == "tool_use":
        tools.append(index)
        function = {"name": str(block.get("name") or ""), "arguments": ""}
        call = {
            "index": len(tools) - 1,
            "id": str(block.get("id") or new_id("toolu_")),
            "type": "function",
            "function": function,
        }
        return {"tool_calls": [call]}
    if kind == "redacted_thinking":
        return {"redacted_thinking": str(block.get("data") or "")}
    if kind == "text" and block.get("text"):
        return {"content": block["text"]}
    if kind == "thinking" and block.get("thinking"):
        return {"reasoning_content": block["thinking"]}
    return None


def _block_delta(delta: dict[str, Any], tools: list[int], index: int) -> dict[str, Any] | None:
    kind = delta.get("type")
    if kind == "text_delta":
        return {"content": str(delta.get("text") or "")}
    if kind == "thinking_delta":
        return {"reasoning_content": str(delta.get("thinking") or "")}
    if kind == "signature_delta" and delta.get("signature"):
        return {"thinking_signature": (name, str(delta["signature"]))}
    if kind == "input_json_delta" and index in tools:
        return {
            "tool_calls": [
                {"index": tools.index(index), "function": {"arguments": str(delta.get("partial_json") or "")}}
            ]
        }
    return None  # citations and server tools have no hub form


def stream_to_hub(call: Call, chunks: Iterator[bytes], tally: Tally) -> Iterator[dict[str, Any]]:
    usage = _UsageReader(call, tally)
    tools: list[int] = []  # block indexes of tool_use blocks, in order: a hub tool call's index is its place
    try:
        for event, payload in events(chunks):
            tally.payloads.append(payload)
            try:
                data = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(data, dict):
                continue
            if data.get("type") == "message_stop":
                break
            if data.get("type") in ("message_start", "message_delta"):
                usage.read(event, data)
            yield from _hub_chunks(event, data, tools)
    finally:
        usage.settle()
    if tally.usage is not None:
        yield {"choices": [], "usage": tally.usage}


def _hub_chunks(event: bytes, data: dict[str, Any], tools: list[int]) -> Iterator[dict[str, Any]]:
    """One upstream event as hub chunks (none, for pings, stops and what the hub has no form for)."""
    kind = data.get("type")
    if kind == "error" or event == b"error":
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        message = str(error.get("message") or "The upstream stream failed.")
        raise GatewayError(502, message, "server_error", "upstream_stream_error")
    delta: dict[str, Any] | None = None
    if kind == "message_start":
        delta = {"role": "assistant", "content": ""}
    elif kind == "content_block_start" and isinstance(data.get("content_block"), dict):
        delta = _block_start(data["content_block"], tools, data.get("index", 0))
    elif kind == "content_block_delta" and isinstance(data.get("delta"), dict):
        delta = _block_delta(data["delta"], tools, data.get("index", 0))
    elif kind == "message_delta" and (data.get("delta") or {}).get("stop_reason"):
        unknown = "tool_calls" if tools else "stop"  # as response_to_hub judges a new stop reason
        yield _hub_chunk({}, STOP_TO_FINISH.get(data["delta"]["stop_reason"], unknown))
    if delta is not None:
        yield _hub_chunk(delta)


def delivered_text(payloads: list[bytes]) -> str:
    """The text a stream carried, to estimate its tokens when no usage came."""
    parts: list[str] = []
    for payload in payloads:
        if b"_delta" not in payload and b"tool_use" not in payload:
            continue
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            continue
        delta = data.get("delta") if data.get("type") == "content_block_delta" else None
        block = data.get("content_block") if data.get("type") == "content_block_start" else None
        if isinstance(delta, dict):
            parts.extend(
                v for k in ("text", "thinking", "partial_json") if isinstance(v := delta.get(k), str)
            )
        elif isinstance(block, dict) and block.get("type") == "tool_use":
            parts.append(str(block.get("name") or ""))
    return "".join(parts)


def answered_text(body: bytes) -> str:
    """The text of a whole answer, to estimate its tokens when no usage came."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    parts = []
    for block in data.get("content") or () if isinstance(data, dict) else ():
        if isinstance(block, dict):
            parts.extend(v for k in ("text", "thinking") if isinstance(v := block.get(k), str))
            if block.get("type") == "tool_use":
                parts.append(orjson.dumps(block.get("input")).decode())
    return "".join(parts)


# -- outbound: errors --------------------------------------------------------------------------------
CREDIT_MARKER = "credit balance is too low"  # a 400 Anthropic sends when the account has run dry
RETRYABLE = frozenset((401, 402, 403, 408, 409, 429, 500, 502, 503, 504, 529))


def map_error(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    """An Anthropic error answer (`{"type": "error", "error": {"type", "message"}}`). A rejected key (401)
    or an account out of credit (402, or 400 "credit balance is too low") sets the key aside and tries
    another channel; 403, 429, 5xx and 529 (overloaded) try another channel too; other 4xx do not."""
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    error = error if isinstance(error, dict) else {}
    kind = error.get("type") if isinstance(error.get("type"), str) else error_type(status)
    message = error.get("message") if isinstance(error.get("message"), str) else ""
    no_credit = status == 402 or kind == "billing_error" or CREDIT_MARKER in message.lower()
    return GatewayError(
        status,
        message or f"The upstream answered {status}.",
        ERROR_TYPES_TO_HUB.get(kind, "server_error" if status >= 500 else "invalid_request_error"),
        kind,
        retryable=status in RETRYABLE or no_credit,
        retry_after=retry_after_s(headers),
        upstream_status=status,
        disables_key=status == 401 or no_credit,
    )
