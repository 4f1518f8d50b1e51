"""A Gemini client's request as a hub request: contents as messages (function calls given ids and their
results matched to them), function declarations as tools, generationConfig as hub fields, embedding
requests as one hub embeddings request; and `countTokens` answered here when no Gemini channel can.
`assistant_message` also reads a Gemini upstream's answer (see `answers`)."""

from __future__ import annotations

import itertools
import mimetypes
import re
from collections.abc import Callable
from typing import Any

import orjson

from gateway import tokens
from gateway.neutral import Call, bad_request
from gateway.protocols.base import Signature
from gateway.protocols.gemini.fields import _dict, _f, _is_int, _list, _texts
from gateway.protocols.gemini.schema import json_schema
from gateway.protocols.gemini.signatures import client_signature, unpack_thinking
from gateway.protocols.gemini.tables import GENERATION_FIELDS, THINKING_LEVELS, TOOL_MODES, name

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def request_to_hub(call: Call) -> dict[str, Any]:
    if call.kind == "embeddings":
        return _embeddings_to_hub(call)
    body = call.body
    hub: dict[str, Any] = {"model": call.model, "messages": _messages_to_hub(body), "stream": call.stream}
    hub.update(_tools_to_hub(body))
    hub.update(_config_to_hub(_dict(_f(body, "generationConfig"))))
    return hub


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
