"""The request to an Anthropic upstream: the client's bytes passed through (model mapped, its version and
betas kept) when the client speaks Anthropic too; else `body_from_hub` builds a Messages body from the hub
request. Every system or developer message goes into the top-level `system`, in order; `response_format`
becomes an instruction appended to it (the Messages API has no JSON mode); thinking is switched off when
the last assistant turn calls tools without a thinking block of Anthropic's, and `temperature` and
`top_k` are left out while thinking (the API refuses both)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import orjson

from gateway.neutral import Call, GatewayError
from gateway.protocols.anthropic.wire import (
    API_VERSION,
    DEFAULT_EFFORT,
    DEFAULT_MAX_TOKENS,
    EFFORT_BUDGETS,
    JSON_INSTRUCTION,
    MIN_THINKING_BUDGET,
    PATHS,
    SAMPLING,
    SCHEMA_INSTRUCTION,
    TOOL_CHOICE_FROM_HUB,
    TOOL_ID,
    _arguments,
    name,
)
from gateway.protocols.openai import new_id
from gateway.upstream import UpstreamRequest

if TYPE_CHECKING:
    from gateway.catalog import ChannelInfo, UpstreamKey


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
