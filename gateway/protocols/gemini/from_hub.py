"""A hub answer as a Gemini client's `GenerateContentResponse` or embedding response: the message as
parts (thoughts only for a client that asked for them, signed thinking riding on the first other part),
the finish reason, and usage as `usageMetadata`. The stream renderer (`streams`) builds on these parts."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.neutral import Call, Usage
from gateway.protocols.gemini.fields import _args, _dict, _list, _texts
from gateway.protocols.gemini.signatures import _signature, pack_thinking, wrap_for_client
from gateway.protocols.gemini.tables import FINISH_FROM_HUB
from gateway.protocols.openai import new_id


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
