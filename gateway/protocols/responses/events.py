"""Hub chunks as the Responses typed event stream (`response.created` to `response.completed`, with the
output items, content parts, deltas and sequence numbers openai-python's accumulator expects), assembling
the assistant message for the conversation store as it goes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from gateway import sse
from gateway.neutral import Call, Usage, empty_stream
from gateway.protocols.base import Signature
from gateway.protocols.responses.encrypted import REDACTED_PREFIX, _call_secret, _thinking_secret
from gateway.protocols.responses.response_object import (
    _Ids,
    _keep,
    _message_item,
    _reasoning_item,
    _response_object,
    _status,
    _tool_item,
    _visibility,
)
from gateway.protocols.responses.tools import ToolNames

_frame = sse.named_frame


@dataclass(slots=True)
class _Open:
    """An output item being streamed."""

    index: int
    item_id: str
    text: str = ""
    signature: Signature | None = None
    call_id: str = ""
    flat: str = ""


class _Stream:
    """Hub chunks as Responses events, one chunk at a time; also the assistant message, for the store."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.names: ToolNames = call.extra.get("names") or ToolNames()
        self.summary, self.encrypted = _visibility(call)
        self.ids = _Ids(call.extra["token"])
        self.sequence = call.extra["sequence"] = 0
        self.output: dict[int, dict[str, Any]] = {}
        self.next_index = 0
        self.reasoning: _Open | None = None
        self.text: _Open | None = None
        self.calls: dict[int, _Open] = {}
        self.finish: str | None = None
        self.usage: Usage | None = None
        self.message: dict[str, Any] = {"role": "assistant", "content": None}

    def event(self, kind: str, **fields: Any) -> bytes:
        data = orjson.dumps({"type": kind, **fields, "sequence_number": self.sequence})
        self.sequence += 1
        self.call.extra["sequence"] = self.sequence
        return _frame(kind.encode(), data)

    def _index(self) -> int:
        self.next_index += 1
        return self.next_index - 1

    def start(self) -> list[bytes]:
        skeleton = _response_object(self.call, "in_progress", [], None)
        return [
            self.event("response.created", response=skeleton),
            self.event("response.in_progress", response=skeleton),
        ]

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        if chunk.get("usage") is not None:
            self.usage = chunk["usage"]
        choices = chunk.get("choices") or ()
        if not choices:
            return []
        choice, frames = choices[0], []
        delta = choice.get("delta") or {}
        if delta.get("reasoning_content"):
            frames += self._think(delta["reasoning_content"])
        if delta.get("thinking_signature"):
            frames += self._close_reasoning(delta["thinking_signature"])
        if delta.get("redacted_thinking"):
            frames += self._close_reasoning()
            self._block({"type": "redacted_thinking", "data": delta["redacted_thinking"]})
            frames += self._standalone_reasoning(REDACTED_PREFIX + delta["redacted_thinking"])
        if delta.get("content"):
            frames += self._close_reasoning() + self._say(delta["content"])
        for fragment in delta.get("tool_calls") or ():
            frames += self._close_reasoning() + self._close_text() + self._call(fragment)
        if choice.get("finish_reason"):
            self.finish = choice["finish_reason"]
        return frames

    def end(self) -> list[bytes]:
        frames = self._close_reasoning() + self._close_text()
        for index in sorted(self.calls):
            frames += self._close_call(self.calls.pop(index))
        status, incomplete = _status(self.finish)
        output = [self.output[i] for i in sorted(self.output)]
        response = _response_object(self.call, status, output, self.usage, incomplete)
        frames.append(self.event(f"response.{status}", response=response))
        _keep(self.call, response, self.message)
        return frames

    # reasoning
    def _block(self, block: dict[str, Any]) -> None:
        self.message.setdefault("thinking_blocks", []).append(block)

    def _think(self, text: str) -> list[bytes]:
        self.message["reasoning_content"] = (self.message.get("reasoning_content") or "") + text
        frames = []
        if self.reasoning is None:
            frames += self._open_reasoning()
        state = self.reasoning
        state.text += text
        if self.summary:
            frames.append(
                self.event(
                    "response.reasoning_summary_text.delta",
                    item_id=state.item_id,
                    output_index=state.index,
                    summary_index=0,
                    delta=text,
                )
            )
        return frames

    def _open_reasoning(self) -> list[bytes]:
        self.reasoning = state = _Open(
            self._index() if self.summary or self.encrypted else -1, self.ids("rs")
        )
        if state.index < 0:
            return []
        item = {"type": "reasoning", "id": state.item_id, "summary": [], "status": "in_progress"}
        frames = [self.event("response.output_item.added", output_index=state.index, item=item)]
        if self.summary:
            part = {"type": "summary_text", "text": ""}
            frames.append(
                self.event(
                    "response.reasoning_summary_part.added",
                    item_id=state.item_id,
                    output_index=state.index,
                    summary_index=0,
                    part=part,
                )
            )
        return frames

    def _close_reasoning(self, signature: Signature | None = None) -> list[bytes]:
        if self.reasoning is None and signature is None:
            return []
        frames = self._open_reasoning() if self.reasoning is None else []
        state, self.reasoning = self.reasoning, None
        block = {"type": "thinking", "thinking": state.text, "signature": signature}
        self._block(block)
        if state.index < 0:
            return frames
        where = {"item_id": state.item_id, "output_index": state.index, "summary_index": 0}
        if self.summary:
            frames.append(self.event("response.reasoning_summary_text.done", **where, text=state.text))
            part = {"type": "summary_text", "text": state.text}
            frames.append(self.event("response.reasoning_summary_part.done", **where, part=part))
        item = _reasoning_item(
            state.item_id, state.text, _thinking_secret(block), self.summary, self.encrypted
        )
        return frames + self._done(state.index, item)

    def _standalone_reasoning(self, secret: str) -> list[bytes]:
        if not self.encrypted:
            return []
        index, item_id = self._index(), self.ids("rs")
        added = {"type": "reasoning", "id": item_id, "summary": [], "status": "in_progress"}
        item = _reasoning_item(item_id, "", secret, False, True)
        return [
            self.event("response.output_item.added", output_index=index, item=added),
            *self._done(index, item),
        ]

    def _done(self, index: int, item: dict[str, Any]) -> list[bytes]:
        self.output[index] = item
        return [self.event("response.output_item.done", output_index=index, item=item)]

    # text
    def _say(self, text: str) -> list[bytes]:
        self.message["content"] = (self.message["content"] or "") + text
        frames = []
        if self.text is None:
            self.text = _Open(self._index(), self.ids("msg"))
            item = _message_item(self.text.item_id, "", "in_progress")
            frames.append(self.event("response.output_item.added", output_index=self.text.index, item=item))
            frames.append(
                self.event(
                    "response.content_part.added",
                    item_id=self.text.item_id,
                    output_index=self.text.index,
                    content_index=0,
                    part={"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                )
            )
        self.text.text += text
        where = {"item_id": self.text.item_id, "output_index": self.text.index, "content_index": 0}
        frames.append(self.event("response.output_text.delta", **where, delta=text, logprobs=[]))
        return frames

    def _close_text(self) -> list[bytes]:
        state, self.text = self.text, None
        if state is None:
            return []
        where = {"item_id": state.item_id, "output_index": state.index, "content_index": 0}
        part = {"type": "output_text", "text": state.text, "annotations": [], "logprobs": []}
        return [
            self.event("response.output_text.done", **where, text=state.text, logprobs=[]),
            self.event("response.content_part.done", **where, part=part),
            *self._done(state.index, _message_item(state.item_id, state.text)),
        ]

    # tool calls: a function's arguments stream as they come; a custom tool's input is inside the JSON of
    # its hub arguments, so it is sent whole when the call ends
    def _call(self, fragment: dict[str, Any]) -> list[bytes]:
        position = fragment.get("index", 0)
        function = fragment.get("function") or {}
        frames = []
        state = self.calls.get(position)
        if state is None:
            state = _Open(-1, self.ids("fc"), call_id=fragment.get("id") or "call_" + secrets.token_hex(12))
            state.flat = function.get("name") or ""
            self.calls[position] = state
        if fragment.get("signature"):
            state.signature = fragment["signature"]
        if state.index < 0 and state.flat:
            if self.encrypted and state.signature:
                frames += self._standalone_reasoning(_call_secret(state.call_id, state.signature))
            state.index = self._index()
            item = _tool_item(state.item_id, state.call_id, state.flat, "", self.names, False)
            frames.append(self.event("response.output_item.added", output_index=state.index, item=item))
        piece = function.get("arguments") or ""
        state.text += piece
        if piece and state.index >= 0 and not self.names.original(state.flat)[2]:
            frames.append(
                self.event(
                    "response.function_call_arguments.delta",
                    item_id=state.item_id,
                    output_index=state.index,
                    delta=piece,
                )
            )
        return frames

    def _close_call(self, state: _Open) -> list[bytes]:
        hub_call: dict[str, Any] = {
            "id": state.call_id,
            "type": "function",
            "function": {"name": state.flat, "arguments": state.text or "{}"},
        }
        if state.signature:
            hub_call["signature"] = state.signature
        self.message.setdefault("tool_calls", []).append(hub_call)
        if state.index < 0:
            return []
        where = {"item_id": state.item_id, "output_index": state.index}
        item = _tool_item(state.item_id, state.call_id, state.flat, state.text or "{}", self.names, True)
        if item["type"] == "custom_tool_call":
            frames = [
                self.event("response.custom_tool_call_input.delta", **where, delta=item["input"]),
                self.event("response.custom_tool_call_input.done", **where, input=item["input"]),
            ]
        else:
            frames = [
                self.event(
                    "response.function_call_arguments.done",
                    **where,
                    arguments=item["arguments"],
                    name=item["name"],
                )
            ]
        return frames + self._done(state.index, item)


def stream_from_hub(call: Call, chunks: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    chunks = iter(chunks)
    first = next(chunks, None)  # before anything is sent, so that an upstream failing now can fail over
    if first is None:
        raise empty_stream()
    stream = _Stream(call)
    yield from stream.start()
    yield from stream.feed(first)
    for chunk in chunks:
        yield from stream.feed(chunk)
    yield from stream.end()
