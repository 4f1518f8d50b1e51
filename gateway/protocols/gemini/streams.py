"""Gemini streams, both ways. To a client: SSE events (`?alt=sse`) or one JSON array sent element by element
(`Framer`), hub chunks rendered as Gemini chunks (`StreamRenderer`), and the error that ends a broken stream.
From an upstream (always asked for SSE): events passed through re-framed for the client, or read into hub
chunks (`StreamReader`); every event repeats the usage so far, and the last one seen is kept."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from gateway import sse
from gateway.neutral import Call, GatewayError, Usage
from gateway.protocols.base import Tally
from gateway.protocols.gemini.answers import _finish, usage_from
from gateway.protocols.gemini.fields import _dict, _list
from gateway.protocols.gemini.from_hub import _answer, _attach, _function_call_part, usage_metadata
from gateway.protocols.gemini.inbound import error_body
from gateway.protocols.gemini.signatures import _signature, pack_thinking
from gateway.protocols.gemini.tables import FINISH_FROM_HUB, name
from gateway.protocols.openai import new_id

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


# -- to a Gemini client: hub chunks as Gemini's stream ---------------------------------------------------
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


# -- from a Gemini upstream: its stream passed through or read into hub chunks ---------------------------
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
