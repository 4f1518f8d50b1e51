"""Hub answers as the client's Anthropic answers: a whole `message`, or a stream of events that opens, fills
and closes one content block at a time. Thinking blocks show only to a client that asked for thinking; a
hub tool call's own signature becomes an empty thinking block just before its `tool_use` block, and a
signature of another protocol is wrapped (`wrap_signature`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from gateway.neutral import Call, Usage
from gateway.protocols.anthropic.client_request import _long_name, wants_thinking
from gateway.protocols.anthropic.usage import usage_json
from gateway.protocols.anthropic.wire import FINISH_TO_STOP, STREAM_HEADERS, _arguments, _event, name
from gateway.protocols.base import wrap_signature
from gateway.protocols.openai import new_id


def stream_headers(call: Call) -> list[tuple[str, str]]:
    return list(STREAM_HEADERS)


# -- a whole answer ----------------------------------------------------------------------------------
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


# -- a streamed answer -------------------------------------------------------------------------------
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
