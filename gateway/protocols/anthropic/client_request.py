"""The client's request: `parse_request` checks it just enough to route, price and limit it;
`request_to_hub` turns it into a hub request (text-only content as one string, tool names shortened to
OpenAI's limit and named back in the answer, a long `metadata.user_id` as its digest, thinking, effort and
structured output mapped); `estimate_count` answers `count_tokens` locally from it."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import orjson

from gateway import tokens
from gateway.neutral import Call, bad_request
from gateway.protocols import openai
from gateway.protocols.anthropic.wire import (
    API_VERSION,
    DEFAULT_EFFORT,
    EFFORTS,
    KINDS,
    PASSED_HEADERS,
    SAMPLING,
    THINKING_TYPES,
    TOOL_CHOICE_TO_HUB,
    TOOL_NAME_MAX_CHARS,
    USER_ID_MAX_CHARS,
    hub_assistant,
    name,
)
from gateway.protocols.base import Signature, unwrap_signature
from gateway.protocols.openai import MODEL_MAX_CHARS, new_id

if TYPE_CHECKING:
    from gateway.relay import Inbound


# -- parsing -----------------------------------------------------------------------------------------
def parse_request(endpoint: str, raw: bytes, inbound: Inbound | None = None) -> Call:
    body = openai.json_object(raw)
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


# -- the request as a hub request --------------------------------------------------------------------
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
    return hub_assistant(texts, thinking, calls)


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
