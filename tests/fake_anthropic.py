"""Fake Anthropic Messages upstream, served by tests.fake_upstream.FakeUpstream (see its `_protocol_fake`).

Answers `POST /v1/messages` (JSON, or SSE with the exact event sequence: message_start, ping, per block
content_block_start / deltas / content_block_stop, message_delta, message_stop) and
`POST /v1/messages/count_tokens`, in the wire format of api-contracts.md section 5, and refuses what
api.anthropic.com refuses where a gateway's conversion could get it wrong: no `anthropic-version`, no
`max_tokens`, a `temperature` above 1, a thinking block it did not sign, a tool turn without its thinking
block while thinking is on, a `tool_use` not answered by a `tool_result` in the next user turn, a
`tool_result` after other blocks, an empty text block, a `budget_tokens` not below `max_tokens`.

What it answers, deterministically:
  * a thinking block ("Let me think about it.", signed `sig-fake-...`) first when thinking is on;
  * a `tool_use` of the first tool (or the one `tool_choice` names) when tools are given, tool_choice is
    `any`/`tool`, or the last user text contains "use a tool"; its input fills each required string
    property with "fake <name>"; Claude Code's "Read the file <path> and ..." calls its `Read` tool on it;
  * after a tool result: `<content> The tool returned: <the result's text>`; else `content` (the knob).

Tokens: input = words of the system text + per message (words of its text and tool results + 3), at least
1 (`prompt_tokens`); output = words of the text and thinking plus the words of each tool input as JSON
(`output_tokens`). The `cached_tokens` knob moves that many input tokens to `cache_read_input_tokens`.
Knobs honoured: chunks, chunk_delay_s, content, no_usage, cached_tokens, cut_after_chunks, error_event,
and the failure knobs (through `failure`, with Anthropic's error bodies).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any

from tests.fake_upstream import count_words, split_content

PATHS = ("/v1/messages", "/v1/messages/count_tokens")
THINKING_TEXT = "Let me think about it."
SIGNATURE_PREFIX = "sig-fake-"
TOOL_TRIGGER = "use a tool"
READ_FILE = re.compile(r"Read the file (\S+?)\.? and")  # Claude Code's recorded tool scenario
CREDIT_MESSAGE = (
    "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or "
    "purchase credits."
)
ERRORS = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


def owns(method: str, path: str) -> bool:
    return method == "POST" and path in PATHS


# -- token counts ------------------------------------------------------------------------------------
def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    parts = []
    for block in value if isinstance(value, list) else ():
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif block.get("type") == "tool_result":
            parts.append(_text(block.get("content")))
    return " ".join(parts)


def prompt_tokens(body: dict[str, Any]) -> int:
    """Input tokens: words of the system text, plus per message the words of its text and tool results + 3."""
    total = count_words(_text(body.get("system")))
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            total += count_words(_text(message.get("content"))) + 3
    return max(1, total)


def output_tokens(blocks: list[dict[str, Any]]) -> int:
    total = 0
    for block in blocks:
        if block["type"] == "text":
            total += count_words(block["text"])
        elif block["type"] == "thinking":
            total += count_words(block["thinking"])
        elif block["type"] == "tool_use":
            total += count_words(json.dumps(block["input"]))
    return total


# -- what to answer ----------------------------------------------------------------------------------
def _signature(text: str) -> str:
    return SIGNATURE_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:16]


def _thinking_on(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _last_user_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return [{"type": "text", "text": content}]
            return [b for b in content or () if isinstance(b, dict)]
    return []


def _tool_to_call(body: dict[str, Any], triggered: bool = False) -> dict[str, Any] | None:
    tools = [t for t in body.get("tools") or () if isinstance(t, dict) and isinstance(t.get("name"), str)]
    if not tools:
        return None
    blocks = _last_user_blocks(body)
    if any(b.get("type") == "tool_result" for b in blocks):
        return None
    choice = body.get("tool_choice") if isinstance(body.get("tool_choice"), dict) else {}
    if choice.get("type") == "none":
        return None
    if choice.get("type") == "tool":
        return next((t for t in tools if t["name"] == choice.get("name")), tools[0])
    if triggered or choice.get("type") == "any" or TOOL_TRIGGER in _text(blocks).lower():
        return tools[0]
    return None


def _tool_input(tool: dict[str, Any]) -> dict[str, Any]:
    schema = tool.get("input_schema") if isinstance(tool.get("input_schema"), dict) else {}
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    return {
        prop: f"fake {prop}"
        for prop in schema.get("required") or ()
        if (properties.get(prop) or {}).get("type", "string") == "string"
    }


def answer_blocks(body: dict[str, Any], content: str) -> tuple[list[dict[str, Any]], str]:
    """The content blocks the fake answers `body` with, and its stop reason."""
    blocks: list[dict[str, Any]] = []
    if _thinking_on(body):
        blocks.append({"type": "thinking", "thinking": THINKING_TEXT, "signature": _signature(THINKING_TEXT)})
    tool, arguments = _tool_to_call(body), None
    read = READ_FILE.search(_text(_last_user_blocks(body)))
    if read and any(t.get("name") == "Read" for t in body.get("tools") or ()) and _tool_to_call(body, True):
        tool, arguments = {"name": "Read"}, {"file_path": read.group(1)}
    if tool is not None:
        call = {"type": "tool_use", "id": "toolu_fake_" + uuid.uuid4().hex[:16], "name": tool["name"]}
        blocks.append({**call, "input": arguments if arguments is not None else _tool_input(tool)})
        return blocks, "tool_use"
    results = [b for b in _last_user_blocks(body) if b.get("type") == "tool_result"]
    if results:
        content = f"{content} The tool returned: " + " ".join(_text(b.get("content")) for b in results)
    blocks.append({"type": "text", "text": content})
    return blocks, "end_turn"


def usage_of(body: dict[str, Any], blocks: list[dict[str, Any]], cached: int) -> dict[str, Any]:
    prompt = prompt_tokens(body)
    read = min(cached, prompt)
    return {
        "input_tokens": prompt - read,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": read,
        "output_tokens": output_tokens(blocks),
    }


# -- what it refuses ---------------------------------------------------------------------------------
def refusal(headers: dict[str, str], path: str, body: Any) -> str | None:
    """The message of the 400 api.anthropic.com would answer `body` with, or None."""
    if not headers.get("anthropic-version"):
        return "anthropic-version: header is required"
    if not isinstance(body, dict):
        return "There was an issue with the request body: it is not valid JSON."
    if not isinstance(body.get("model"), str):
        return "model: Field required"
    if not isinstance(body.get("messages"), list):
        return "messages: Field required"
    if path == "/v1/messages/count_tokens":
        return None
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and not 0 <= temperature <= 1:
        return "temperature: Input should be less than or equal to 1"
    thinking = body.get("thinking")
    enabled = isinstance(thinking, dict) and thinking.get("type") == "enabled"
    return _thinking_refusal(body) or _messages_refusal(body["messages"], enabled)


def _thinking_refusal(body: dict[str, Any]) -> str | None:
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        if budget >= body["max_tokens"]:
            return "`max_tokens` must be greater than `thinking.budget_tokens`."
        if "temperature" in body or "top_k" in body:
            return "`temperature` and `top_k` may not be set while thinking is enabled."
    return None


def _messages_refusal(messages: list[Any], thinking: bool) -> str | None:
    pending: set[str] = set()  # tool_use ids the next user turn must answer
    last_assistant: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        if any(b.get("type") == "text" and not b.get("text") for b in blocks):
            return f"messages.{i}: text content blocks must be non-empty"
        if message.get("role") == "assistant":
            if pending:
                return (
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after"
                )
            for block in blocks:
                if block.get("type") == "thinking" and not str(block.get("signature")).startswith(
                    SIGNATURE_PREFIX
                ):
                    return f"messages.{i}.content: Invalid `signature` in `thinking` block"
            pending = {str(b.get("id")) for b in blocks if b.get("type") == "tool_use"}
            last_assistant = blocks
        elif message.get("role") == "user":
            kinds = [b.get("type") for b in blocks]
            if "tool_result" in kinds and kinds.index("tool_result") > 0 and kinds[0] != "tool_result":
                return f"messages.{i}: `tool_result` blocks must come first in the user message"
            answered = {str(b.get("tool_use_id")) for b in blocks if b.get("type") == "tool_result"}
            if pending - answered:
                return (
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after"
                )
            pending = set()
    calls_tools = any(b.get("type") == "tool_use" for b in last_assistant)
    if thinking and calls_tools and last_assistant[0].get("type") not in ("thinking", "redacted_thinking"):
        return "Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant` message must start with a thinking block."  # noqa: E501
    return None


# -- answering ---------------------------------------------------------------------------------------
def _error(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}, "request_id": "req_fake"}


def handle(handler: Any, path: str, body: Any) -> None:
    problem = refusal(handler.rec.headers, path, body)
    if problem is not None:
        handler._send_json(400, _error("invalid_request_error", problem), {"request-id": "req_fake"})
        return
    if path == "/v1/messages/count_tokens":
        handler._send_json(200, {"input_tokens": prompt_tokens(body)})
        return
    beh = handler.beh
    blocks, stop = answer_blocks(body, beh.content)
    usage = usage_of(body, blocks, beh.cached_tokens)
    if body.get("stream"):
        _stream(handler, body, blocks, stop, usage)
        return
    message = {
        "id": "msg_fake_" + uuid.uuid4().hex[:20],
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
    }
    if not beh.no_usage:
        message["usage"] = usage
    handler._send_json(200, message, {"request-id": "req_fake"})


def failure(handler: Any, status: int, body: Any) -> None:
    beh = handler.beh
    extra = {"request-id": "req_fake"}
    if beh.quota_exhausted:
        status, payload = 400, _error("invalid_request_error", CREDIT_MESSAGE)
    elif beh.error_body is not None:
        payload = beh.error_body
    else:
        type_, message = ERRORS.get(status) or (
            "api_error" if status >= 500 else "invalid_request_error",
            "Error",
        )
        payload = _error(type_, message)
    if status == 429 and beh.retry_after is not None:
        extra["retry-after"] = beh.retry_after
    handler._send_json(status, payload, extra)


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def _block_events(index: int, block: dict[str, Any], pieces: int) -> list[dict[str, Any]]:
    """A block's content_block_start and its deltas (the stop follows the last delta)."""
    kind = block["type"]
    if kind == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in split_content(block["text"], pieces)]
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": block["thinking"]}]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    else:
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        text = json.dumps(block["input"])
        deltas = [
            {"type": "input_json_delta", "partial_json": p} for p in split_content(text, min(3, len(text)))
        ]
    events = [{"type": "content_block_start", "index": index, "content_block": start}]
    return events + [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]


def _stream(handler: Any, body: dict[str, Any], blocks: list[dict[str, Any]], stop: str, usage: dict) -> None:
    beh, fake = handler.beh, handler.server.fake
    message = {
        "id": "msg_fake_" + uuid.uuid4().hex[:20],
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    if beh.no_usage:
        del message["usage"]
    handler.start_stream()
    if not handler.write_chunk(_sse({"type": "message_start", "message": message})):
        return
    if not handler.write_chunk(_sse({"type": "ping"})):
        return
    sent = 0  # content deltas sent, for cut_after_chunks
    for index, block in enumerate(blocks):
        for event in _block_events(index, block, beh.chunks):
            if event["type"] == "content_block_delta":
                if beh.cut_after_chunks is not None and sent >= beh.cut_after_chunks:
                    handler.cut_stream()
                    return
                if beh.chunk_delay_s > 0 and fake._stopping.wait(beh.chunk_delay_s):
                    handler.cut_stream()
                    return
                sent += 1
            if not handler.write_chunk(_sse(event)):
                return
        if beh.error_event is not None and index == len(blocks) - 1:
            error = beh.error_event.get("error") if isinstance(beh.error_event.get("error"), dict) else {}
            event = _error(error.get("type") or "overloaded_error", error.get("message") or "Overloaded")
            if handler.write_chunk(_sse(event)):
                handler.end_stream()
            return
        if not handler.write_chunk(_sse({"type": "content_block_stop", "index": index})):
            return
    if beh.cut_after_chunks is not None:
        handler.cut_stream()
        return
    final: dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}}
    if not beh.no_usage:
        final["usage"] = usage
    for event in (final, {"type": "message_stop"}):
        if not handler.write_chunk(_sse(event)):
            return
    handler.end_stream()


# -- checking a stream a gateway sent, for the tests -------------------------------------------------
STOP_REASONS = ("end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal")
DELTA_TYPES = {
    "text": ("text_delta", "citations_delta"),
    "thinking": ("thinking_delta", "signature_delta"),
    "tool_use": ("input_json_delta",),
    "redacted_thinking": (),
}


def parse_sse(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of every event in an SSE body; an event without a name raises."""
    events = []
    for block in data.replace(b"\r\n", b"\n").split(b"\n\n"):
        if not block.strip():
            continue
        lines = block.decode().split("\n")
        names = [line[6:].strip() for line in lines if line.startswith("event:")]
        payload = "\n".join(line[5:].removeprefix(" ") for line in lines if line.startswith("data:"))
        assert names, f"an event without an `event:` line: {block!r}"
        events.append((names[0], json.loads(payload)))
    return events


def check_sequence(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Assert that `events` is a valid Anthropic message stream (api-contracts.md section 5, in the order
    the SDK's accumulator needs); return the message it builds, as the SDK builds it."""
    from anthropic.lib.streaming._messages import accumulate_event

    assert all(name == data.get("type") for name, data in events), "event names must equal their data's type"
    kinds = [name for name, _ in events if name != "ping"]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"], kinds
    assert kinds.count("message_start") == kinds.count("message_delta") == kinds.count("message_stop") == 1
    open_block: tuple[int, str] | None = None
    started = -1
    json_bufs: dict[int, str] = {}
    for name, data in events:
        if name == "content_block_start":
            assert open_block is None, "a block started before the previous one stopped"
            assert data["index"] == started + 1, "block indexes count up from 0"
            started = data["index"]
            open_block = (started, data["content_block"]["type"])
            json_bufs[started] = ""
        elif name == "content_block_delta":
            assert open_block is not None and data["index"] == open_block[0], "a delta outside its block"
            assert data["delta"]["type"] in DELTA_TYPES[open_block[1]], (open_block, data)
            if data["delta"]["type"] == "input_json_delta":
                json_bufs[started] += data["delta"]["partial_json"]
        elif name == "content_block_stop":
            assert open_block is not None and data["index"] == open_block[0]
            if open_block[1] == "tool_use":
                assert isinstance(json.loads(json_bufs[started] or "{}"), dict)
            open_block = None
        elif name == "message_delta":
            assert open_block is None, "message_delta while a block is open"
            assert data["delta"]["stop_reason"] in STOP_REASONS
            assert isinstance(data["usage"]["output_tokens"], int)
    snapshot = None
    bufs: dict[int, bytes] = {}
    for name, data in events:
        if name != "ping":
            snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=bufs)
    return snapshot.model_dump()
