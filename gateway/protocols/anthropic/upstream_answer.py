"""An Anthropic upstream's answers, whole or streamed: passed through as they are, usage read on the way,
or turned into hub data. Usage comes in `message_start` and, cumulative, in `message_delta`;
`message_stop` ends a stream. A stream cut before its `message_delta` keeps `message_start`'s input
counts; its output is counted from the delivered text."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import orjson

from gateway import sse, tokens
from gateway.neutral import Call, GatewayError, Usage
from gateway.protocols.anthropic.usage import usage_from
from gateway.protocols.anthropic.wire import STOP_TO_FINISH, frame, hub_assistant, name
from gateway.protocols.base import Tally
from gateway.protocols.openai import new_id, upstream_json


# -- whole answers -----------------------------------------------------------------------------------
def native_response(call: Call, body: bytes) -> tuple[bytes, Usage | None]:
    return body, usage_from(upstream_json(body).get("usage"))


def response_to_hub(call: Call, body: bytes) -> dict[str, Any]:
    data = upstream_json(body)
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
    message = hub_assistant(texts, thinking, calls)
    finish = STOP_TO_FINISH.get(data.get("stop_reason") or "", "tool_calls" if calls else "stop")
    return {
        "id": data.get("id"),
        "created": int(time.time()),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage_from(data.get("usage")),
    }


# -- streams -----------------------------------------------------------------------------------------
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
